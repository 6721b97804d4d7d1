"""The pairwise board (PROTOCOL=pairwise, AlpacaEval's way): every model against the reference,
both orders, one combined preference per (model, question). Modules:
- board.py: the builder (judge, then board.csv, the views, board_pairs.json, manifest.json), and
  the printed table of an existing board;
- stats.py: the board table (alpaca_eval's win rate, bootstrap intervals, by dataset, warnings);
- lc.py: the length-controlled win rate (fit jointly over the board's models);
- compare.py: model against model (paired bootstrap), Bradley-Terry, judge agreement;
- ensemble.py: several judges and model-against-model battles;
- views.py: board.csv/md/png/html and the printed table;
- replay.py: AlpacaEval 2's published verdicts replayed through stats.py (a check, and a script).
Imports go one way: board -> ensemble -> compare/stats -> lc; views -> stats. Arena-Hard
(board/arena_hard/) builds on this board; this package never imports it.
"""
