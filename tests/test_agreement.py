"""Agreement metrics between maps, pinned to known values and to scipy."""

import numpy as np
import pytest
from scipy import optimize, stats

from interp import agreement as ag


def blobs(count: int, size: int = 84, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size]
    centres = rng.uniform(10, size - 10, (count, 2))
    return np.exp(-((ys - centres[:, 0, None, None]) ** 2 + (xs - centres[:, 1, None, None]) ** 2) / 50.0)


def test_identical_maps_agree_perfectly():
    maps = blobs(3)
    assert np.allclose(ag.pearson(maps, maps), 1) and np.allclose(ag.spearman(maps, maps), 1)
    assert np.allclose(ag.sim(maps, maps), 1) and np.allclose(ag.kl(maps, maps), 0, atol=1e-12)
    assert np.allclose(ag.iou_top(maps, maps, 10), 1) and np.allclose(ag.emd(maps, maps), 0, atol=1e-9)
    assert (ag.auc(maps, ag.top(maps, 10)) > 0.999).all()


def test_disjoint_maps_share_nothing():
    left, right = np.zeros((1, 84, 84)), np.zeros((1, 84, 84))
    left[0, :, :40], right[0, :, 44:] = 1.0, 1.0
    assert ag.sim(left, right)[0] == 0 and ag.iou_top(left, right, 20)[0] == 0
    assert ag.kl(left, right)[0] > 5  # log(P / EPSILON) on every pixel of P
    # all the mass moves by 44 pixels or more, and the coarse grid keeps the two halves apart
    assert ag.emd(left, right)[0] > 40


def test_a_uniform_map_scores_chance():
    uniform, other = np.ones((2, 84, 84)), blobs(2)
    assert np.allclose(ag.nss(uniform, ag.top(other, 10)), 0)
    assert np.allclose(ag.auc(uniform, ag.top(other, 10)), 0.5)
    assert np.allclose(ag.pearson(uniform, other), 0)


def test_metrics_match_scipy():
    rng = np.random.default_rng(1)
    p, q = rng.random((2, 21, 21)), rng.random((2, 21, 21))
    q[0, 3:9, 3:9] += 3  # some structure, and ties in the positives
    for i in range(2):
        assert np.isclose(ag.pearson(p, q)[i], stats.pearsonr(p[i].ravel(), q[i].ravel())[0])
        assert np.isclose(ag.spearman(p, q)[i], stats.spearmanr(p[i].ravel(), q[i].ravel())[0])
        P, Q = p[i].ravel() / p[i].sum(), q[i].ravel() / q[i].sum()
        assert np.isclose(ag.kl(p, q)[i], stats.entropy(P + ag.EPSILON, Q + ag.EPSILON), rtol=1e-6)
        positives = ag.top(q, 10)[i]
        u = stats.mannwhitneyu(p[i].ravel()[positives], p[i].ravel()[~positives]).statistic
        assert np.isclose(ag.auc(p, ag.top(q, 10))[i], u / (positives.sum() * (~positives).sum()))
        standardised = (p[i].ravel() - p[i].mean()) / p[i].std()
        assert np.isclose(ag.nss(p, ag.top(q, 10))[i], standardised[positives].mean())


def test_emd_matches_a_linear_program():
    rng = np.random.default_rng(2)
    p, q = rng.random((1, 24, 24)), rng.random((1, 24, 24))
    grid = 4
    P, Q = ag.pool(p, grid).ravel(), ag.pool(q, grid).ravel()
    P, Q = P / P.sum(), Q / Q.sum()
    centres = (np.stack(np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij"), -1).reshape(-1, 2) + 0.5) * 6
    # 24 = 4 x 6: cell (i, j) holds pixels 6i..6i+5 and is centred at 6i + 3, i.e. (i + 0.5) * 6
    assert np.allclose(P.reshape(grid, grid) * p.sum(), p[0].reshape(grid, 6, grid, 6).sum(axis=(1, 3)))
    cost = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    n = grid * grid
    equalities = np.vstack([np.kron(np.eye(n), np.ones(n)), np.kron(np.ones(n), np.eye(n))])
    solution = optimize.linprog(cost.ravel(), A_eq=equalities, b_eq=np.concatenate([P, Q]), bounds=(0, None))
    assert np.isclose(ag.emd(p, q, grid=grid)[0], solution.fun, rtol=1e-6)


def test_emd_equals_the_full_transport_problem():
    # ag.emd solves each problem between the cells where the maps differ only; POT on every cell gives the same
    import ot

    rng = np.random.default_rng(3)
    p, q = rng.random((20, 42, 42)) ** 4, rng.random((20, 42, 42)) ** 4
    p[:5, :20] = 0  # empty cells on one side
    q[10] = p[10]  # identical maps
    P, Q = ag._distribution(ag.pool(p, 12)), ag._distribution(ag.pool(q, 12))
    cost = ot.dist(ag.cell_centres(42, 12), ag.cell_centres(42, 12), metric="euclidean")
    full = np.array([ot.emd2(a, b, cost) for a, b in zip(P, Q, strict=True)])
    ours = ag.emd(p, q)
    assert np.allclose(ours, full, rtol=1e-12, atol=1e-12) and ours[10] == 0 and (np.delete(ours, 10) > 1).all()


def test_emd_sees_every_pixel_of_the_frame():
    corner, origin = np.zeros((1, 84, 84)), np.zeros((1, 84, 84))
    corner[0, 83, 83], origin[0, 0, 0] = 1.0, 1.0
    # 12 x 12 cells of 7 x 7 pixels: the two corner cells' centres are 11 cells apart on both axes
    assert ag.emd(corner, origin)[0] == pytest.approx(11 * 7 * np.sqrt(2), rel=1e-9)
    border = np.zeros((1, 84, 84))
    border[0, 80:, :], border[0, :, 80:] = 1.0, 1.0  # mass only in the last 4 rows and columns
    assert ag.pool(border, 12).sum() == pytest.approx(border.sum())
    assert ag.pool(border, 12)[0, :11, :11].sum() == 0  # the mass stays in the last row and column of cells
    assert ag.emd(border, origin)[0] > 70
    assert ag.emd(border, border)[0] == pytest.approx(0, abs=1e-9)


def test_pooling_shares_a_straddling_pixel_by_area():
    maps = np.zeros((1, 42, 42))
    maps[0, 3, 0] = 1.0  # 42 pixels on 12 cells of 3.5: pixel 3 is half in cell 0 and half in cell 1
    pooled = ag.pool(maps, 12)[0]
    assert pooled[0, 0] == pytest.approx(0.5) and pooled[1, 0] == pytest.approx(0.5) and pooled.sum() == 1
    assert ag.cell_centres(42, 12)[0] == pytest.approx([1.75, 1.75])


def test_agreement_reports_chance_levels_and_object_masses():
    attention = blobs(6, seed=3)
    saliency = attention + 0.002 * np.random.default_rng(4).random(attention.shape)
    masks = {"ball": np.zeros(attention.shape, dtype=bool)}
    masks["ball"][:, 40:44, 40:44] = True
    table = ag.agreement(attention, saliency, masks).set_index("metric")
    assert table.loc["cc", "value"] > 0.9 and abs(table.loc["cc", "chance"]) < 0.1
    assert table.loc["sim", "value"] > table.loc["sim", "chance"]
    assert table.loc["emd", "value"] < table.loc["emd", "chance"]
    assert table.loc["attention_mass/ball", "chance"] == pytest.approx(16 / 84**2)
    assert set(table.index) >= {"kl_attention_saliency", "kl_saliency_attention", "iou_top5", "nss_top20",
                                "auc_top10", "saliency_mass/ball"}
