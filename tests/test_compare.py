"""qa.compare: one table over rq and qagg fits (issue 27)."""
import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import DataError


@pytest.fixture(scope="module")
def engel():
    d = qa.datasets.load("engel")
    return d.iloc[:180], d.iloc[180:]


def test_rq_columns_stars_and_statistics(engel):
    train, _ = engel
    a = qa.rq("foodexp ~ income", train, tau=[0.25, 0.75])
    b = qa.rq("foodexp ~ income", train, tau=0.5, se="nid")
    c = qa.compare(a, b, names=["rank", "nid"])
    t = c.table
    assert list(t.columns) == ["rank q0.25", "rank q0.75", "nid q0.5"]
    p = b.pvalues.loc["income", "q0.5"]
    assert p < 0.001 and t.loc["income", "nid q0.5"].endswith("***")
    rows = list(t.index)
    se_row = t.iloc[rows.index("income") + 1]
    assert se_row["nid q0.5"] == f"({qa.results.fmt_sig(b.std_errors.loc['income', 'q0.5'])})"
    assert se_row["rank q0.25"].startswith("[") and not t.loc["income", "rank q0.25"].endswith("*")
    assert t.loc["R1 (Koenker-Machado)", "nid q0.5"] == qa.results.fmt_sig(b.r1.iloc[0])
    tidy = c.to_frame()
    row = tidy[(tidy.model == "nid q0.5") & (tidy.term == "income")].iloc[0]
    assert row.estimate == b.params.loc["income", "q0.5"] and row.p_value == p
    assert "Signif. codes" in str(c) and "<table" in c._repr_html_()


def test_qagg_and_rq_on_the_same_test_data(engel):
    train, test = engel
    a = qa.rq("foodexp ~ income", train, tau=[0.05, 0.25, 0.5, 0.75, 0.95], se="nid")
    f = qa.qagg("foodexp ~ income", train, test=test, seed=0, cv=3)
    c = qa.compare({"rq": a, "agg": f}, test=test)
    t = c.table
    want = f.scores(test).loc["aggregate"]
    assert t.loc["Test WIS", "agg"] == qa.results.fmt_sig(want.wis)
    assert t.loc["Test coverage 90%", "agg"] == qa.results.fmt_sig(want.coverage_90)
    # the rq levels scored on the same rows, by the same scorer
    q = a.predict(test).to_numpy()
    mine = qa.scoring.score_table(test.foodexp.to_numpy(), {"rq": q}, a.taus).iloc[0]
    assert t.loc["Test WIS", "rq q0.5"] == qa.results.fmt_sig(mine.wis)
    assert t.loc["Weight family", "agg"] == "quantile" and t.loc["Weight family", "rq q0.5"] == ""
    assert list(t.index)[-1] == "Seconds"
    # without test=, the aggregation's own qagg(test=) scores
    own = qa.compare(f).table
    assert own.loc["Test WIS", "(1)"] == qa.results.fmt_sig(f.test_scores.loc["aggregate"].wis)


def test_compare_errors_and_namespace(engel):
    train, _ = engel
    fit = qa.rq("foodexp ~ income", train, tau=0.5, se="nid")
    with pytest.raises(DataError, match="at least one fit"):
        qa.compare()
    with pytest.raises(DataError, match="fit 2 is a DataFrame"):
        qa.compare(fit, train)
    with pytest.raises(DataError, match="distinct labels"):
        qa.compare(fit, fit, names=["a", "a"])
    import qaggstats.comparison  # noqa: F401  importing the module must not hide the function
    assert callable(qa.compare)
