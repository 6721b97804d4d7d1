"""Inference backends, picked by a model's `backend` key in models.toml (load.py: load_backend).

Every backend takes a ModelSpec and answers a list of questions with `answer(questions)`, an
iterator of (question index, result) in the order answers finish; a result is
{"output", "tokens", "seconds"} or {"error"}. A failure in one question never stops the others.
`close()` frees what the backend holds. What every backend makes of a question (the user turn, the
chat messages with the earlier turns, per-question generation settings) is tools/lib/messages.py.
Modules:
- load.py: load_backend(spec), the one place a backend is chosen;
- llama_backend.py (GGUF, llama.cpp in-process), with llama_engine.py (batched decoding),
  llama_score.py (a prompt's next-token logits, for judges), llama_label.py (a judge's labelled
  calls in one decode each: the label read from the cells its explanation left) and gpu_fit.py (layers on the GPU),
  with gguf_file.py (a GGUF's metadata and tensor table, read without its vocabulary);
- hf_backend.py (transformers folders, optionally in the model's own virtual environment), with
  hf_batch.py (batched generation), hf_fit.py (memory) and hf_quant.py (bitsandbytes/GPTQ/AWQ);
- openai_backend.py (any OpenAI-compatible server), with openai_client.py (HTTP, retries);
- custom_backend.py (a Python function registered in tools/custom/).
This file imports nothing: import what you use from its module.
"""
