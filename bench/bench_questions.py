"""32 benchmark questions, built here so the benchmark needs no data file: 16 English, 16 Chinese.

Topics crossed with question forms give prompts of different lengths, like a real question set.
"""
TOPICS_EN = ["the moon", "bread", "rivers", "bicycles", "volcanoes", "honey bees", "chess", "rain"]
FORMS_EN = ["Explain in simple words how {} works.",
            "Write a short story that involves {}, with a surprising ending."]
TOPICS_ZH = ["月亮", "面包", "河流", "自行车", "火山", "蜜蜂", "象棋", "下雨"]
FORMS_ZH = ["请用简单的话解释{}是怎么回事。", "写一个关于{}的小故事，结尾要出人意料。"]


def bench_questions(n: int = 32) -> list[dict]:
    texts = [f.format(t) for f in FORMS_EN for t in TOPICS_EN] + [f.format(t) for f in FORMS_ZH for t in TOPICS_ZH]
    # Interleave English and Chinese so any first n mixes both.
    mixed = [q for pair in zip(texts[:16], texts[16:]) for q in pair]
    return [{"instruction": q} for q in (mixed * (n // len(mixed) + 1))[:n]]
