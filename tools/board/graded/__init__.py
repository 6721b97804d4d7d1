"""The graded board (PROTOCOL=grade): each answer rated alone, 1-10, by the judge. Modules:
- board.py: the builder (rate, then the files) and the printed table of an existing board;
- mt_bench.py, alignbench.py, own_grade.py: the graders' prompts and how their replies are read
  (MT-Bench as FastChat builds it, AlignBench's, the project's own for plain question files);
- stats.py: scores with bootstrap intervals, categories, model against model, warnings;
- pairs.py: MT-Bench's pairwise mode (FastChat's pairwise-all) beside the graded board;
- views.py: board.csv/md/png/html;
- export.py: the graded board's exports in FastChat's and AlignBench's own formats;
- check.py: `make judge-check PROTOCOL=grade`, a grader on pairs with a known winner.
Imports go one way: board -> stats, views, export, pairs -> the graders' prompts.
"""
