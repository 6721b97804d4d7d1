"""The board: from verdicts to the leaderboard's numbers and views, one folder per protocol.

The stage script is `python tools/board` (__main__.py runs cli.py's main(): the flags, the judges,
then the protocol's builder). Modules:
- cli.py: the stage (flags, judges, which protocol: protocols.py), and --show of an existing board;
- protocols.py: the table of protocols (name -> builder, printer, inputs, graders, judge-check);
  standard library only, read by the Makefile, cli.py, benchsets.py and judge_check.py;
- provenance.py: what made each model's answers (manifest.json), and warnings about them;
- published.py: the published leaderboards beside ours (AlpacaEval 1.0 / 2.0, Arena-Hard);
- pairwise/: the pairwise board (AlpacaEval's way): stats, lc, compare, ensemble, views, replay;
- arena_hard/: Arena-Hard-Auto v0.1 (its judge prompt and labels, its score, its files), built on
  the pairwise board's files;
- graded/: single-answer grading (MT-Bench, AlignBench, the project's own), MT-Bench's pairwise
  mode, their stats, views and exports.
Imports go one way: cli -> protocols -> (by name) a protocol's board.py; arena_hard -> pairwise;
every protocol -> provenance, published; none of these imports cli.
"""
