"""Length-controlled win rates, fit jointly over every model on the board (AlpacaEval 2's model).

AlpacaEval 2 fits, for each model m and question q, a logistic regression of the judge's
(soft) preference for the model over the reference:

    logit P(model wins) = theta_m + phi_m * tanh(length difference / its std) + psi_m * gamma_q

and reports the mean over questions of sigmoid(theta_m + psi_m * gamma_q): the win rate had
the model answered at the reference's length. gamma_q is a per-question difficulty, and phi_m is
anchored by verdicts on length-manipulated variants of its baseline, downloaded from the Hub.

Offline we have neither those variants nor AlpacaEval's difficulties, so this module fits the
same model over all the board's models at once, which anchors what a single model cannot:

- the length slope phi is the judge's, one for all models (a judge's taste for long answers
  does not depend on who wrote them). Fit per model it would be learnt from that model's own
  length variation and extrapolated to "same length as the reference", which lifts a model that
  always answers in a few words far above where AlpacaEval puts it;
- gamma_q is learnt from how every model fared on question q, with a Gaussian prior
  (GAMMA_L2), so a question only one or two models answered stays near average;
- psi_m (how much model m feels a question's difficulty) is shrunk toward 1 (ridge, PSI_L2).

With one model (or questions only one model answered) there is no difficulty to learn: gamma
is 0 there and the fit reduces to one length slope, learnt from that model alone.
lc_standard_error is AlpacaEval's: the standard error of the mean of the per-question
length-controlled predictions (x100), not a sampling interval of the LC win rate.
Not handled: length measured in tokens (characters here, as AlpacaEval), other confounders
(style, markdown), and models whose every answer equals the reference's (their LC is their win
rate: there is no length difference to control).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

# Priors (ridge penalties = Gaussian priors, on the logit scale):
GAMMA_L2 = 0.6  # question difficulty ~ N(0, 1.3^2); empirical Bayes on AlpacaEval 2's 20 x 805 verdicts
#                 gives 0.54, but is unstable with a handful of models, so the prior is fixed
PSI_L2 = 10.0  # each model's difficulty loading ~ N(1, 0.32^2)
LC_METHOD = (f"AlpacaEval 2's GLM (theta_m + phi * tanh(len diff / std) + psi_m * gamma_q), fit jointly over the "
             f"board's models: one length slope, question difficulty ~ N(0, 1/{GAMMA_L2}), psi_m ~ N(1, 1/{PSI_L2}); "
             "mean over questions of P(win) at length diff 0")


def _fit(p, mi, qi, t, n_models, n_q, lam_gamma, start):
    """Minimize the soft log-loss plus the priors; returns the parameter vector."""
    has_q = n_q > 0

    def unpack(w):
        return w[:n_models], w[n_models], w[n_models + 1:2 * n_models + 1], w[2 * n_models + 1:]

    def loss(w):
        theta, phi, psi, gamma = unpack(w)
        g = gamma[qi] if has_q else np.zeros_like(p)
        eta = theta[mi] + phi * t + psi[mi] * g
        r = expit(eta) - p
        value = (np.logaddexp(0, eta) - p * eta).sum()
        value += (lam_gamma * gamma ** 2).sum() / 2 + PSI_L2 / 2 * ((psi - 1) ** 2).sum()
        grad = [np.bincount(mi, r, n_models), [(r * t).sum()],
                np.bincount(mi, r * g, n_models) + PSI_L2 * (psi - 1),
                (np.bincount(qi, r * psi[mi], n_q) if has_q else np.zeros(0)) + lam_gamma * gamma]
        return value, np.concatenate(grad)

    return unpack(minimize(loss, start, jac=True, method="L-BFGS-B").x)


def length_controlled(frame: pd.DataFrame) -> pd.DataFrame:
    """lc_win_rate and lc_standard_error (in %) per model.

    frame: one row per judged pair with columns model, question_id, preference (alpaca_eval's
    1..2; 0 counts as a tie), len_model, len_reference (characters). Rows without a preference
    are ignored."""
    data = frame[frame["preference"].notna()].copy()
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(frame["model"])), name="model"),
                       columns=["lc_win_rate", "lc_standard_error"], dtype=float)
    if data.empty:
        return out
    data["p"] = data["preference"].astype(float).replace({0.0: 1.5}) - 1
    data["d"] = data["len_model"].astype(float) - data["len_reference"].astype(float)
    # A model with no length difference anywhere (the reference against itself): nothing to control.
    flat = data.groupby("model")["d"].transform(lambda d: bool((d == 0).all()))
    for model, group in data[flat].groupby("model"):
        out.loc[model] = [group["p"].mean() * 100, 0.0]
    data = data[~flat]
    if data.empty:
        return out
    models = list(dict.fromkeys(data["model"]))
    mi = data["model"].map({m: i for i, m in enumerate(models)}).to_numpy()
    scale = data.groupby("model")["d"].transform("std").fillna(0).to_numpy()
    d = data["d"].to_numpy()
    t = np.tanh(np.divide(d, scale, out=np.zeros_like(d), where=scale > 0))  # AlpacaEval's feature
    p = data["p"].to_numpy()
    # Difficulty only where at least two models answered the question: with one, it is that
    # model's own outcome, not the question's.
    shared = data.groupby("question_id")["model"].transform("nunique") > 1
    questions = list(dict.fromkeys(data.loc[shared, "question_id"]))
    q_index = {q: i for i, q in enumerate(questions)}
    n_q = len(questions) if len(models) > 1 else 0
    # Questions without a difficulty share one extra slot pinned at 0 by a huge prior.
    qi = data["question_id"].map(q_index).fillna(n_q).astype(int).to_numpy() if n_q else np.zeros(len(p), int)
    n_slots = n_q + 1 if n_q else 0
    lam = np.full(n_slots, GAMMA_L2)
    if n_q:
        lam[-1] = 1e9
    start = np.concatenate([np.zeros(len(models) + 1), np.ones(len(models)), np.zeros(n_slots)])
    theta, phi, psi, gamma = _fit(p, mi, qi, t, len(models), n_slots, lam, start)
    g = gamma[qi] if n_q else np.zeros_like(p)
    at_same_length = expit(theta[mi] + psi[mi] * g)
    for i, model in enumerate(models):
        mine = pd.Series(at_same_length[mi == i])
        sem = mine.sem() * 100 if len(mine) > 1 else math.nan
        out.loc[model] = [mine.mean() * 100, sem]
    return out
