"""Every value of ``tests/data/golden_small.json`` through the public API.

The file holds 4 epochs x 4 examples x 3 classes of logits and the per-example values of many
published conventions, computed independently and rounded to 6 decimals, so values are checked
to 1e-6 absolute. Each is checked from float64 and float32 logits, and the probability-based ones
also from float64 softmax probabilities with ``kind="probs"``.

A few conventions are not columns of fastcarto's tables but exact formulas of them; those are
derived here from the output, and each derivation is spelled out where it is made.
"""

from __future__ import annotations

from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pytest
from reference import reference_compat, reference_metrics, softmax

ATOL = 1e-6

GOLD_PROB = "gold_prob_per_epoch[example][epoch] (softmax of logits)"
ARGMAX_CORRECT = "argmax_correct_per_epoch[example][epoch]"
CONFIDENCE = "confidence (mean gold prob)"
VAR_DDOF0 = "variability, population std ddof=0 (cartography, tfdatamap, tavolo, Data-IQ)"
VAR_DDOF1 = "variability, sample std ddof=1"
VAR_CI = "variability, cartography --include_ci sqrt(v + v^2/(E-1))"
CORRECT_COUNT = "correctness, count of argmax-correct epochs (cartography)"
CORRECT_FRACTION = "correctness, fraction argmax-correct (tfdatamap, su-vtda)"
CORRECT_DATAIQ = "correctness, fraction of epochs with gold prob > 0.5 (tavolo, Data-IQ)"
FORGET_RAW = "forgetting events, raw 1->0 transitions"
FORGET_CARTOGRAPHY = "forgetfulness, cartography (never learned -> 1000)"
FORGET_TONEVA = "forgetting, Toneva (never learned -> number of epochs)"
FORGET_DATA_DIET = "forgetting, data_diet (never learned -> inf)"
THRESHOLD_CLOSENESS = "threshold_closeness c(1-c)"
ALEATORIC = "Data-IQ aleatoric mean g(1-g)"
AUM = "AUM, mean over all epochs of logit margin z_y - max_{k!=y} z_k (aum package)"
AUM_SKIP0 = "AUM, skipping epoch 0 (AUM paper replication scripts)"
CCS = "accumulated probability margin, sum over epochs (CCS)"
CLEANLAB = "cleanlab normalized_margin (p_y - max_{k!=y} p_k + 1)/2 at the last epoch"
EL2N = "EL2N, L2 norm of softmax - onehot at epoch index 1 (data_diet)"
EL2N_SQUARED = "EL2N, squared L2 at epoch index 1 (H-CAT)"
TRAK = "soft margin z_y - logsumexp_{k!=y} z_k at the last epoch (TRAK)"

CHECKED = {
    GOLD_PROB,
    ARGMAX_CORRECT,
    CONFIDENCE,
    VAR_DDOF0,
    VAR_DDOF1,
    VAR_CI,
    CORRECT_COUNT,
    CORRECT_FRACTION,
    CORRECT_DATAIQ,
    FORGET_RAW,
    FORGET_CARTOGRAPHY,
    FORGET_TONEVA,
    FORGET_DATA_DIET,
    THRESHOLD_CLOSENESS,
    ALEATORIC,
    AUM,
    AUM_SKIP0,
    CCS,
    CLEANLAB,
    EL2N,
    EL2N_SQUARED,
    TRAK,
}

# Every value is checked from each source, except the logit quantities (AUM, its variant
# skipping epoch 0, TRAK's soft margin), which only the logit sources check.
LOGIT_SOURCES = ["float64 logits", "float32 logits"]
SOURCES = [*LOGIT_SOURCES, "float64 probs"]


def source(golden: dict[str, Any], which: str) -> tuple[np.ndarray, str]:
    z = golden["logits"]
    if which == "float64 logits":
        return z, "logits"
    if which == "float32 logits":
        return z.astype(np.float32), "logits"
    if which == "float64 probs":
        return softmax(z), "probs"
    raise ValueError(which)


def close(got: Any, want: Any, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), want, rtol=0, atol=ATOL, err_msg=what
    )


def exact(got: Any, want: Any, what: str) -> None:
    np.testing.assert_array_equal(np.asarray(got, dtype=np.float64), want, err_msg=what)


def test_every_golden_value_is_checked(golden: dict[str, Any]) -> None:
    assert set(golden["expected"]) == CHECKED


def test_golden_shape(golden: dict[str, Any]) -> None:
    assert golden["logits"].shape == (4, 4, 3)
    assert golden["labels"].tolist() == [0, 1, 2, 0]
    for key, values in golden["expected"].items():
        assert values.shape[0] == 4, key


def test_reference_reproduces_golden(golden: dict[str, Any]) -> None:
    """The numpy reference the differential tests trust agrees with the independent values."""
    z, y, want = golden["logits"], golden["labels"], golden["expected"]
    ref = reference_metrics(z, y, "logits")
    close(ref["confidence"], want[CONFIDENCE], "reference")
    close(ref["variability"], want[VAR_DDOF0], "reference")
    close(reference_metrics(z, y, "logits", ddof=1)["variability"], want[VAR_DDOF1], "reference")
    close(ref["correctness"], want[CORRECT_FRACTION], "reference")
    exact(ref["forgetting"], want[FORGET_RAW], "reference")
    close(ref["aum"], want[AUM], "reference")
    close(reference_metrics(z, y, "logits", epochs=[1, 2, 3])["aum"], want[AUM_SKIP0], "reference")
    close(ref["threshold_closeness"], want[THRESHOLD_CLOSENESS], "reference")
    close(reference_metrics(z, y, "logits", epochs=[1])["el2n"], want[EL2N], "reference")
    for e in range(4):
        close(
            reference_metrics(z, y, "logits", epochs=[e])["confidence"],
            want[GOLD_PROB][:, e],
            "reference",
        )
    probs = reference_metrics(softmax(z), y, "probs")
    close(probs["aum"] * probs["n_epochs"], want[CCS], "reference")
    cartography = reference_compat(z, y, "logits", "cartography")
    exact(cartography["correctness"], want[CORRECT_COUNT], "reference")
    exact(cartography["forgetfulness"], want[FORGET_CARTOGRAPHY], "reference")
    dataiq = reference_compat(z, y, "logits", "dataiq")
    close(dataiq["aleatoric"], want[ALEATORIC], "reference")
    close(dataiq["correctness"], want[CORRECT_DATAIQ], "reference")
    exact(
        reference_compat(z, y, "logits", "toneva")["forgetting"], want[FORGET_TONEVA], "reference"
    )


def make_case(golden: dict[str, Any], which: str) -> dict[str, Any]:
    outputs, kind = source(golden, which)
    return {
        "name": which,
        "outputs": outputs,
        "kind": kind,
        "labels": golden["labels"],
        "expected": golden["expected"],
        "n_epochs": outputs.shape[0],
    }


@pytest.fixture(params=SOURCES)
def case(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    return make_case(golden, request.param)


@pytest.fixture(params=LOGIT_SOURCES)
def logit_case(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    return make_case(golden, request.param)


def run(case: dict[str, Any], **kwargs: Any) -> fastcarto.DataMap:
    return fastcarto.compute(case["outputs"], case["labels"], kind=case["kind"], **kwargs)


def test_gold_prob_per_epoch(case: dict[str, Any]) -> None:
    want = case["expected"][GOLD_PROB]
    for e in range(case["n_epochs"]):
        dm = run(case, epochs=[e])
        close(dm["confidence"], want[:, e], f"{case['name']} epoch {e}")
        # One epoch: the standard deviation is zero, and n_epochs counts one.
        close(dm["variability"], 0.0, f"{case['name']} epoch {e}")
        exact(dm["n_epochs"], 1, f"{case['name']} epoch {e}")


def test_argmax_correct_per_epoch(case: dict[str, Any]) -> None:
    want = case["expected"][ARGMAX_CORRECT]
    for e in range(case["n_epochs"]):
        exact(run(case, epochs=[e])["correctness"], want[:, e], f"{case['name']} epoch {e}")
        exact(
            run(case, epochs=[e], compat="cartography")["correctness"],
            want[:, e],
            f"{case['name']} epoch {e}",
        )
        # first_learned at a single epoch is that epoch exactly when correct.
        first = run(case, epochs=[e])["first_learned"]
        exact(first, np.where(want[:, e] == 1, e, np.nan), f"{case['name']} epoch {e}")


def test_confidence(case: dict[str, Any]) -> None:
    want = case["expected"][CONFIDENCE]
    close(run(case)["confidence"], want, case["name"])
    close(run(case, compat="cartography")["confidence"], want, case["name"])
    close(run(case, compat="dataiq")["confidence"], want, case["name"])


def test_variability(case: dict[str, Any]) -> None:
    close(run(case)["variability"], case["expected"][VAR_DDOF0], case["name"])
    close(run(case, ddof=1)["variability"], case["expected"][VAR_DDOF1], case["name"])
    close(run(case, compat="cartography")["variability"], case["expected"][VAR_DDOF0], case["name"])
    close(run(case, compat="dataiq")["variability"], case["expected"][VAR_DDOF0], case["name"])
    close(
        run(case, compat="cartography", ddof=1)["variability"],
        case["expected"][VAR_DDOF1],
        case["name"],
    )


def test_variability_cartography_include_ci(case: dict[str, Any]) -> None:
    # Derived, not a column: allenai/cartography's --include_ci variability is
    # sqrt(var + var^2 / (E - 1)) with var the population variance (np.var), i.e. the square of
    # fastcarto's ddof=0 variability. A formula of the output.
    std = run(case)["variability"]
    var = std**2
    e = case["n_epochs"]
    close(np.sqrt(var + var**2 / (e - 1)), case["expected"][VAR_CI], case["name"])


def test_correctness(case: dict[str, Any]) -> None:
    exact(
        run(case, compat="cartography")["correctness"],
        case["expected"][CORRECT_COUNT],
        case["name"],
    )
    assert run(case, compat="cartography").to_arrow().schema.field("correctness").type == pa.int64()
    close(run(case)["correctness"], case["expected"][CORRECT_FRACTION], case["name"])
    close(run(case, compat="dataiq")["correctness"], case["expected"][CORRECT_DATAIQ], case["name"])


def test_forgetting(case: dict[str, Any]) -> None:
    dm = run(case)
    exact(dm["forgetting"], case["expected"][FORGET_RAW], case["name"])
    exact(
        run(case, compat="cartography")["forgetfulness"],
        case["expected"][FORGET_CARTOGRAPHY],
        case["name"],
    )
    toneva = run(case, compat="toneva")
    exact(toneva["forgetting"], case["expected"][FORGET_TONEVA], case["name"])
    exact(toneva["never_learned"], dm["never_learned"], case["name"])
    # Derived, not a column: data_diet scores never-learned examples as infinitely forgotten.
    data_diet = np.where(dm["never_learned"], np.inf, dm["forgetting"].astype(np.float64))
    exact(data_diet, case["expected"][FORGET_DATA_DIET], case["name"])
    exact(dm["never_learned"], case["expected"][CORRECT_COUNT] == 0, case["name"])


def test_threshold_closeness(case: dict[str, Any]) -> None:
    close(run(case)["threshold_closeness"], case["expected"][THRESHOLD_CLOSENESS], case["name"])
    close(
        run(case, compat="cartography")["threshold_closeness"],
        case["expected"][THRESHOLD_CLOSENESS],
        case["name"],
    )


def test_dataiq_aleatoric(case: dict[str, Any]) -> None:
    close(run(case, compat="dataiq")["aleatoric"], case["expected"][ALEATORIC], case["name"])


def test_aum(logit_case: dict[str, Any]) -> None:
    case = logit_case
    close(run(case)["aum"], case["expected"][AUM], case["name"])
    dm = run(case, compat="aum")
    assert dm.columns == ["sample_id", "aum"]
    exact(dm["sample_id"], np.arange(4), case["name"])
    close(dm["aum"], case["expected"][AUM], case["name"])


def test_aum_skipping_epoch_0(logit_case: dict[str, Any]) -> None:
    case = logit_case
    want = case["expected"][AUM_SKIP0]
    for epochs in ([1, 2, 3], slice(1, None)):
        close(run(case, epochs=epochs)["aum"], want, f"{case['name']} epochs={epochs}")
        close(
            run(case, epochs=epochs, compat="aum")["aum"], want, f"{case['name']} epochs={epochs}"
        )
        exact(run(case, epochs=epochs)["n_epochs"], 3, case["name"])


def probs_of(case: dict[str, Any]) -> np.ndarray:
    """Softmax probabilities of the case's outputs, in the case's dtype."""
    if case["kind"] == "probs":
        return case["outputs"]
    return softmax(case["outputs"]).astype(case["outputs"].dtype)


def test_ccs_accumulated_probability_margin(case: dict[str, Any]) -> None:
    # Derived: CCS sums the probability margin p_y - max_{k!=y} p_k over epochs; fastcarto's aum
    # of probabilities (kind="probs") is its mean, so the sum is aum * n_epochs.
    dm = fastcarto.compute(probs_of(case), case["labels"], kind="probs")
    close(dm["aum"] * dm["n_epochs"], case["expected"][CCS], case["name"])


def test_cleanlab_normalized_margin(case: dict[str, Any]) -> None:
    # Derived: cleanlab's normalized margin (p_y - max_{k!=y} p_k + 1) / 2 at the last epoch is
    # (aum of probabilities at epochs=[3] + 1) / 2.
    dm = fastcarto.compute(probs_of(case), case["labels"], kind="probs", epochs=[3])
    close((dm["aum"] + 1) / 2, case["expected"][CLEANLAB], case["name"])


def test_el2n(case: dict[str, Any]) -> None:
    el2n = run(case, epochs=[1])["el2n"]
    close(el2n, case["expected"][EL2N], case["name"])
    # Derived: H-CAT's squared EL2N is the square of the one-epoch EL2N.
    close(el2n**2, case["expected"][EL2N_SQUARED], case["name"])


def test_trak_soft_margin(logit_case: dict[str, Any]) -> None:
    case = logit_case
    # Derived: z_y - logsumexp_{k!=y} z_k = ln(p_y / (1 - p_y)) = logit(p_y), with p_y the
    # confidence at the single epoch 3. Also equal to -loss - ln(1 - exp(-loss)).
    dm = run(case, epochs=[3])
    g = dm["confidence"]
    close(np.log(g / (1 - g)), case["expected"][TRAK], case["name"])
    loss = dm["loss"]
    close(-loss - np.log(-np.expm1(-loss)), case["expected"][TRAK], case["name"])


def test_golden_tables_via_npy_path(golden: dict[str, Any], tmp_path: Any) -> None:
    path = tmp_path / "golden.npy"
    np.save(path, golden["logits"])
    dm = fastcarto.compute(str(path), golden["labels"], kind="logits")
    close(dm["confidence"], golden["expected"][CONFIDENCE], "npy")
    close(dm["aum"], golden["expected"][AUM], "npy")
    exact(dm["forgetting"], golden["expected"][FORGET_RAW], "npy")


def test_aum_package_unit_case(golden: dict[str, Any]) -> None:
    case = golden["aum_package_unit_case"]
    ids = {"a": 0, "b": 1, "c": 2}
    acc = fastcarto.Accumulator(n_examples=3, n_classes=3, kind="logits", compat="aum")
    counts = {key: 0 for key in ids}
    for k, update in enumerate(case["updates"]):
        logits = np.array(update["logits"], dtype=np.float64)
        targets = np.array(update["targets"], dtype=np.int64)
        index = np.array([ids[i] for i in update["ids"]], dtype=np.int64)
        acc.update(logits, targets, ids=index, epoch=k)
        for i in update["ids"]:
            counts[i] += 1
    df = acc.finalize().to_pandas()
    assert df.columns.tolist() == ["sample_id", "aum"]
    by_id = dict(zip(df["sample_id"].tolist(), df["aum"].tolist(), strict=True))
    for name, want in case["expected_aum"].items():
        assert by_id[ids[name]] == pytest.approx(want, abs=ATOL), name
    assert counts == case["expected_count"]
    # The engine's own count of updates per example, from the accumulator's raw state.
    state = acc.to_arrow()
    n = state.column(state.schema.get_field_index("n")).to_pylist()
    assert {name: n[i] for name, i in ids.items()} == case["expected_count"]
