"""The board: from verdicts to the leaderboard's numbers and views.

The stage script is `python tools/board` (cli.py has its main(): judge, then write the views). Modules:
- stats.py: the board table (alpaca_eval's win rate, bootstrap intervals, by dataset, warnings);
- lc.py: the length-controlled win rate (fit jointly over the board's models);
- compare.py: model against model (paired bootstrap), Bradley-Terry, judge agreement;
- ensemble.py: several judges and model-against-model battles;
- views.py: board.csv/md/png/html and the printed table;
- replay.py: AlpacaEval 2's published verdicts replayed through stats.py (a check, and a script).
Imports go one way: cli -> ensemble -> compare/stats -> lc; views -> stats.
"""
