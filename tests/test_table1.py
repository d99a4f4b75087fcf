import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.data.sample import phantom_sample

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
table1 = pytest.importorskip("table1")

TINY = {"steps": 5, "draws": 3, "width": 8, "depth": 1, "threads": 1, "warmup": 5,
        "max_tree_depth": 3}
FITTED = ("bbb", "mcd_image", "de2")


def test_table1_runs_every_method_resumes_and_reruns_what_changed(tmp_path):
    dataset = table1.DataSet("unused", "phantoms", "phantom", (20,), "fine")
    profile = table1.Profile((dataset,), overrides=TINY, workers=1)
    members = table1.member_configs(20, 2, TINY)
    assert [m.inference for m in members] == ["mcd", "mcd"]
    sample = phantom_sample(5, 20, 16)
    rows = table1.run_image(sample, dataset, 20, 5, profile, tmp_path, members)
    methods = [r["method"] for r in rows]
    assert methods == ["FBP", "CGLS", "EM", "SART", "SIRT", "TV", "Bayesian TV", "BBB",
                       "MCD, one mask per draw", "MCD, per-pixel masks", "DE-2"]
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")}
    assert len(files) == 10  # six baselines, Bayesian TV, BBB, MCD (one mask per draw), DE-2
    btv = posterior.config(posterior.load(tmp_path / "btv_phantom_20v_5.nc"))
    assert btv["tv_weight"] == table1.tv_settings("unused", 20).weight  # TV's own weight
    assert btv["steps"] == table1.tv_settings("unused", 20).iterations != TINY["steps"]
    # the per-pixel MCD row is member 1 of the DE-2 fit
    de2 = posterior.load(tmp_path / "de2_phantom_20v_5.nc")
    member = next(r for r in rows if r["method"] == "MCD, per-pixel masks")
    assert member["n_draws"] == posterior.image_draws(de2.isel(chain=[0])).shape[0]
    assert all(r["git_commit"] for r in rows)
    assert "crps_object" in rows[0] and "paper_delta_ece" in rows[-1]
    # a rerun reads every run back: no file is rewritten
    again = table1.run_image(sample, dataset, 20, 5, profile, tmp_path, members)
    assert [r["psnr"] for r in again] == [r["psnr"] for r in rows]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")} == files
    # a changed configuration reruns exactly the runs it concerns (Bayesian TV's steps are
    # TV's iterations: not among them)
    changed = table1.Profile((dataset,), overrides=TINY | {"steps": 6}, workers=1)
    table1.run_image(sample, dataset, 20, 5, changed, tmp_path,
                     table1.member_configs(20, 2, TINY | {"steps": 6}))
    now = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")}
    rerun = sorted(name for name in files if now[name] != files[name])
    assert rerun == sorted(f"{kind}_phantom_20v_5.nc" for kind in FITTED)
    # the committed CSV alone (no run files) is enough to resume: rows are kept when their
    # hashes match, and a changed configuration is rerun
    rows = table1.run_image(sample, dataset, 20, 5, changed, tmp_path,
                            table1.member_configs(20, 2, TINY | {"steps": 6}))
    table1.write_tables(rows, tmp_path, "tiny")
    runs = tmp_path / "runs"
    runs.mkdir()
    done = table1.read_rows(tmp_path)
    kept = table1.run_image(sample, dataset, 20, 5, changed, runs,
                            table1.member_configs(20, 2, TINY | {"steps": 6}), done=done)
    assert not list(runs.glob("*.nc"))
    assert [r["psnr"] for r in kept] == pytest.approx([r["psnr"] for r in rows])
    # a row of a table written before the air level existed reads back as NaN (a later
    # table writes the empty column back as "nan"): scored at 0, it is kept on a phantom
    unrecorded = {key: row | {"air_level": np.nan} for key, row in done.items()}
    table1.run_image(sample, dataset, 20, 5, changed, runs,
                     table1.member_configs(20, 2, TINY | {"steps": 6}), done=unrecorded)
    assert not list(runs.glob("*.nc"))
    # a row keeps the air level it was scored at: another one (a real-CT row scored before
    # the level existed) is scored again from the run files, and no run is refitted
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")}
    windowed = dataclasses.replace(sample, air_level=0.025)
    rescored = table1.run_image(windowed, dataset, 20, 5, changed, tmp_path,
                                table1.member_configs(20, 2, TINY | {"steps": 6}), done=done)
    assert {r["air_level"] for r in kept} == {0.0} and {r["air_level"] for r in rescored} == {0.025}
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")} == before
    assert [r["psnr"] for r in rescored] == pytest.approx([r["psnr"] for r in rows])
    assert all(r["object_share"] < k["object_share"] for r, k in zip(rescored, kept, strict=True))
    table1.run_image(sample, dataset, 20, 5, profile, runs, members, done=done)
    assert sorted(p.name for p in runs.glob("*.nc")) == sorted(
        f"{kind}_phantom_20v_5.nc" for kind in FITTED)
    # so do other data: a noisy sinogram of the same phantom reruns everything
    noisy = phantom_sample(5, 20, 16, snr_db=30)
    table1.run_image(noisy, dataset, 20, 5, changed, tmp_path,
                     table1.member_configs(20, 2, TINY | {"steps": 6}))
    later = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")}
    assert all(later[name] != now[name] for name in files)


def test_table1_larger_ensemble_reuses_the_members_of_a_smaller_one(tmp_path):
    dataset = table1.DataSet("unused", "phantoms", "phantom", (20,), "fine")
    profile = table1.Profile((dataset,), overrides=TINY, workers=1)
    sample = phantom_sample(5, 20, 16)
    table1.run_image(sample, dataset, 20, 5, profile, tmp_path,
                     table1.member_configs(20, 2, TINY))
    store = tmp_path / "members_phantom_20v_5"
    kept = {p.name: p.stat().st_mtime_ns for p in store.glob("*.nc")}
    assert sorted(kept) == ["member0.nc", "member1.nc"]
    rows = table1.run_image(sample, dataset, 20, 5, profile, tmp_path,
                            table1.member_configs(20, 3, TINY))
    now = {p.name: p.stat().st_mtime_ns for p in store.glob("*.nc")}
    assert sorted(now) == ["member0.nc", "member1.nc", "member2.nc"]
    assert all(now[name] == kept[name] for name in kept)  # read back, not refitted
    small = posterior.load(tmp_path / "de2_phantom_20v_5.nc")
    large = posterior.load(tmp_path / "de3_phantom_20v_5.nc")
    np.testing.assert_array_equal(posterior.image_draws(large.isel(chain=[0, 1])),
                                  posterior.image_draws(small))
    de2 = [r for r in rows if r["method"] == "DE-2"]
    assert len(de2) == 1 and de2[0]["config_hash"] == posterior.run_attrs(large)["config_hash"]


def test_table1_markdown_sets_the_paper_alongside_with_footnotes(tmp_path):
    rows = [{"dataset": "phantoms", "split": "test", "views": 20, "image_id": i,
             "method": method, "psnr": 30.0 + i, "ece_object": 0.1, "git_commit": "abc",
             "git_dirty": 0, "config_hash": method[:4], "data_hash": f"d{i}", "seconds": 60.0}
            for i in (5, 6) for method in ("SIRT", "MCD, per-pixel masks", "DE-2")]
    # the DE-2 rows are read off the runs of the per-pixel rows (the ensemble's member 1)
    rows = [r | {"config_hash": "MCD,"} if r["method"] == "DE-2" else r for r in rows]
    rows.append(rows[0] | {"dataset": "real CT", "image_id": 2, "data_hash": "d2"})
    table1.write_tables(rows, tmp_path, "tiny", wall=120.0)
    text = (tmp_path / "table1.md").read_text()
    sirt = next(line for line in text.splitlines() if line.startswith("| 20 | SIRT |"))
    assert "35.50" in sirt and "30.44" in sirt  # our mean, the paper's test PSNR of SIRT
    mcd = next(line for line in text.splitlines() if "MCD, per-pixel masks" in line)
    assert "33.08" in mcd  # the paper's MCD row beside the per-pixel one
    assert "## real CT, test split" in text and "HMC*" in text
    # 5 runs of a minute each (shared runs count once); the sitting's own wall time
    assert "The 5 runs behind these rows took 5.0 min" in text and "took 2.0 min" in text
    assert (tmp_path / "table1.csv").read_text().count("\n") == len(rows) + 1


def test_table1_hmc_row_of_a_named_recipe_has_convergence_columns(tmp_path):
    """A profile's ``hmc_config`` gives the HMC row; a run of 2 chains gets the object's
    R-hat share and median ESS, shown in the markdown only where a row has them."""
    recipe = tmp_path / "tiny_nuts.toml"
    recipe.write_text('inference = "nuts"\ndepth = 1\nwidth = 8\nsteps = 5\nchains = 2\n'
                      'warmup = 10\ndraws = 30\nmax_tree_depth = 3\nthreads = 1\n')
    dataset = table1.DataSet("unused", "phantoms 64", "phantom64", (20,), "fine", hmc=True)
    profile = table1.Profile((dataset,), overrides=TINY, workers=1, hmc_config=str(recipe),
                             hmc_overrides={"draws": 30})  # TINY's 3 draws: ESS undefined
    sample = phantom_sample(5, 20, 16)
    job = table1.jobs(sample, dataset, 20, profile, table1.member_configs(20, 2, TINY),
                      "test")[-1]
    assert job.stem == "hmc" and job.settings.chains == 2 and job.settings.width == 8
    idata = job.make()
    row = table1._row(idata, "HMC")
    assert 0 <= row["rhat_share_object"] <= 1 and row["ess_bulk_object"] > 0
    one_chain = table1._row(idata.isel(chain=[0]), "HMC")
    assert "rhat_share_object" not in one_chain  # R-hat needs chains to compare
    keys = {"dataset": "phantoms 64", "split": "test", "views": 20, "image_id": 5,
            "git_commit": "abc", "git_dirty": 0, "data_hash": "d", "seconds": 1.0}
    rows = [row | keys | {"config_hash": "h"},
            {"method": "SIRT", "psnr": 20.0, "config_hash": "s"} | keys]
    table1.write_tables(rows, tmp_path, "tiny")
    assert "| R-hat<=1.05 obj |" in (tmp_path / "table1.md").read_text()
    table1.write_tables(rows[1:], tmp_path, "tiny")
    assert "| R-hat<=1.05 obj |" not in (tmp_path / "table1.md").read_text()


def test_nearest_validated_views():
    assert [table1.validated("mcd", v) for v in (5, 8, 13, 20, 60)] == [
        "mcd_5", "mcd_5", "mcd_20", "mcd_20", "mcd_20"]
    assert table1.model_config("mcd", 60, {}).dropout_scope == "pixel"
    assert table1.model_config("mcd_image", 5, {}).dropout_scope == "image"
    # real CT takes the files chosen on the real-CT slices, as the fit command does
    real = table1.member_configs(60, 2, {}, "real")
    assert [m.dropout for m in real] == [table1.model_config("mcd", 60, {}, "real").dropout] * 2
    assert real[0] != table1.member_configs(60, 2, {})[0]


def tiny_table(tmp_path, monkeypatch, datasets, members):
    """Table 1 on a ``tiny`` profile of ``datasets`` (test split, TINY budgets): a function
    that runs it with extra arguments and returns the keys of the table's rows."""
    monkeypatch.setitem(table1.PROFILES, "tiny",
                        table1.Profile(datasets, splits=("test",), members=members,
                                       overrides=TINY, workers=1))
    out = tmp_path / "table"

    def run(*extra):
        monkeypatch.setattr(sys, "argv", ["table1.py", "--profile", "tiny", "--out", str(out),
                                          *extra])
        table1.main()
        return list(table1.read_rows(out))

    return run


def test_a_run_of_some_datasets_keeps_the_rows_of_the_others(tmp_path, monkeypatch):
    """``--datasets`` reruns only what it names: the table keeps every other row."""
    from bayes_inr.data.benchmark import build_benchmark, write_dataset

    data = build_benchmark(size=16, views=(4,), n_phantoms=6)  # ids 0-4 val, 5 test
    protocol = data.attrs["protocol"]
    paths = [write_dataset(data, tmp_path / f"{name}.nc") for name in ("one", "two")]
    datasets = tuple(table1.DataSet(str(path), path.stem, path.stem, (4,), protocol)
                     for path in paths)
    run = tiny_table(tmp_path, monkeypatch, datasets, members=2)
    both = run()
    assert {key[0] for key in both} == {"one", "two"}
    assert sorted(run("--datasets", "two")) == sorted(both)  # nothing of "one" is lost
    assert [key[0] for key in both] == [key[0] for key in run("--datasets", "two")]


def test_views_runs_only_the_view_counts_it_names(tmp_path, monkeypatch, capsys):
    """``--views`` runs the named view counts and keeps the other rows; a view count the
    profile does not have is one error line, exit 2, before any work."""
    from bayes_inr.data.benchmark import build_benchmark, write_dataset

    data = build_benchmark(size=16, views=(4, 6), n_phantoms=6)
    path = write_dataset(data, tmp_path / "one.nc")
    dataset = table1.DataSet(str(path), "one", "one", (4, 6), data.attrs["protocol"])
    run = tiny_table(tmp_path, monkeypatch, (dataset,), members=1)
    assert {key[2] for key in run("--views", "6")} == {6}
    assert {key[2] for key in run("--views", "4")} == {4, 6}
    with pytest.raises(SystemExit) as stop:
        run("--views", "20")
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --views 20: profile tiny has 4, 6 here"


@pytest.mark.parametrize(("method", "stem", "chains"),
                         [("de5", "de10", 5), ("mcd_pixel", "de10", 1), ("bbb", "bbb", 3),
                          ("detop2", "detop5", 2)])
def test_recalibration_fits_the_runs_table1_fits_on_real_ct(monkeypatch, method, stem, chains):
    """The recalibration script's runs are Table 1's own (same job, config hash and file) on
    the real-CT slices too, whose members and BBB take the real-CT configurations, and it
    scores the part of the run the row does (DE-5: the first five members; DE-2, top 2: the
    first two of the top five), with the slices' air level."""
    recalibrate = pytest.importorskip("recalibrate_table1")
    import arviz as az

    from bayes_inr.core.provenance import config_hash
    from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark

    real = next(d for d in table1.PROFILES["cpu"].datasets if d.name == "real CT")
    data = load_benchmark(real.path)
    seen = []
    monkeypatch.setattr(table1, "cached",
                        lambda path, make, settings, sample: seen.append(settings) or (0, 1))
    profile = table1.PROFILES["cpu"]
    ranked = table1.ranked_configs(real, 20, profile.members, profile.overrides)
    (path, read), *_ = recalibrate.job_runs(data, real, 20, "val",
                                             recalibrate.METHODS[method], ranked)
    image_id = benchmark_ids(data, "val")[0]
    assert path == recalibrate.RUNS / f"{stem}_real_20v_{image_id}.nc"
    sample = benchmark_sample(data, image_id, 20)
    members = table1.member_configs(20, profile.members, profile.overrides, "real")
    (job,) = [j for j in table1.jobs(sample, real, 20, profile, members, "val", None, ranked)
              if j.stem == stem]
    assert config_hash(seen[0]) == config_hash(job.settings)
    phantom_members = table1.member_configs(20, profile.members, profile.overrides)
    assert phantom_members != members  # the phantoms' configurations would be another run
    total = {"bbb": 3, "detop5": 5}.get(stem, 10)
    run = az.from_dict(posterior_predictive={"image": np.zeros((total, 2, 4, 4))},
                       constant_data={"ground_truth": np.zeros((4, 4))})
    monkeypatch.setattr(recalibrate.posterior, "load", lambda p: run if p == path else None)
    selected = read()
    assert selected.posterior_predictive.sizes["chain"] == chains
    assert posterior.air_level(selected) == sample.air_level == 0.025


def test_recalibration_refuses_ensembles_a_dataset_does_not_have(monkeypatch, capsys):
    recalibrate = pytest.importorskip("recalibrate_table1")
    for argv, count in ((["--method", "detop5", "--views", "5"], 0),
                        (["--method", "detop10"], 5)):
        monkeypatch.setattr(sys, "argv", ["recalibrate_table1.py", *argv])
        with pytest.raises(SystemExit) as stop:
            recalibrate.main()
        assert stop.value.code == 2
        assert f"has {count} ranked configurations" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["recalibrate_table1.py", "--method", "despread10"])
    with pytest.raises(SystemExit) as stop:  # the phantoms have no TV-spread ensemble
        recalibrate.main()
    assert stop.value.code == 2 and "no TV-spread ensemble" in capsys.readouterr().err


def test_tv_per_dataset_profiles_give_inr_configs_tv_weight_validated_on_their_data():
    """A profile on data its INR configurations were not chosen on (``paper5``) starts them at
    TV's weight validated on those data; every other profile keeps the configuration's."""
    dataset = table1.DataSet("data/reference_64.nc", "phantoms 64", "phantom64", (20,), "fine")
    sample = phantom_sample(5, 20, 16)
    members = table1.member_configs(20, 1, TINY)
    validated = table1.tv_settings(dataset.path, 20).weight
    written = members[0].tv_weight
    assert members[0].tv_units == "objective" and written != validated
    for per_dataset, want in ((True, validated), (False, written)):
        profile = table1.Profile((dataset,), overrides=TINY, tv_per_dataset=per_dataset)
        configs = {j.stem: j.settings for j in table1.jobs(sample, dataset, 20, profile,
                                                            members, "test")}
        assert configs["bbb"].tv_weight == configs["mcd_image"].tv_weight == want
        assert table1.dataset_tv(members[0], dataset, 20, profile).tv_weight == want
    factor = members[0].replace(tv_units="factor")  # a TV factor is not TV's weight
    profile = table1.Profile((dataset,), overrides=TINY, tv_per_dataset=True)
    assert table1.dataset_tv(factor, dataset, 20, profile).tv_weight == written
    assert table1.PROFILES["paper5"].tv_per_dataset


def test_ranked_profiles_ensemble_the_top_configurations_beside_seeds_of_the_best(
        tmp_path, monkeypatch):
    """``DataSet.ranked``: DE-N of seeds takes the rank-1 configuration, and ``DE-N, top N``
    ensembles ranks 1 to N (by rank number: top10 comes after top2), reusing member 0 of the
    seeds' ensemble (rank 1, first seed) instead of fitting it again."""
    ranked = tmp_path / "models" / "de_tiny"
    ranked.mkdir(parents=True)
    for rank, dropout in ((1, 0.1), (2, 0.2), (10, 0.3)):
        (ranked / f"sweep_top{rank}.toml").write_text(
            f'inference = "mcd"\ndropout_scope = "pixel"\ndropout = {dropout}\n')
    monkeypatch.setattr(table1, "MODELS", tmp_path / "models")
    dataset = table1.DataSet("unused", "phantoms", "phantom", (20, 5), "fine",
                             ranked=((20, "de_tiny"),))
    top = table1.ranked_configs(dataset, 20, 2, TINY)
    assert [c.dropout for c in top] == [0.1, 0.2]
    # ten members asked, three ranked: DE-2, top 2 and no DE-5, top 5 or DE-10, top 10
    assert [c.dropout for c in table1.ranked_configs(dataset, 20, 10, TINY)] == [0.1, 0.2, 0.3]
    assert table1.ranked_configs(dataset, 5, 10, TINY) is None
    (ranked / "sweep_top2.toml").unlink()
    (ranked / "sweep_top10.toml").unlink()
    with pytest.raises(table1.InputError, match="at least 2 ranked configs, .* has 1"):
        table1.ranked_configs(dataset, 20, 10, TINY)
    profile = table1.Profile((dataset,), overrides=TINY, workers=1)
    members = table1.member_configs(20, 2, TINY, base=top[0])
    sample = phantom_sample(5, 20, 16)
    store = tmp_path / "members"
    ensembles = table1.jobs(sample, dataset, 20, profile, members, "test", store, top)[-2:]
    assert [[label for label, _ in job.rows] for job in ensembles] == [
        ["MCD, per-pixel masks", "DE-2"], ["DE-2, top 2"]]
    seeds, best = (table1.cached(tmp_path / f"{job.stem}.nc", job.make, job.settings,
                                 sample)[0] for job in ensembles)
    assert [job.stem for job in ensembles] == ["de2", "detop2"]
    assert [c["dropout"] for c in posterior.config(seeds)["member_configs"]] == [0.1, 0.1]
    assert [c["dropout"] for c in posterior.config(best)["member_configs"]] == [0.1, 0.2]
    top_store = tmp_path / "members_top"
    assert sorted(p.name for p in top_store.glob("*.nc")) == ["member0.nc", "member1.nc"]
    assert (top_store / "member0.nc").samefile(store / "member0.nc")  # reused, not refitted
    assert not (top_store / "member1.nc").samefile(store / "member1.nc")
    np.testing.assert_array_equal(best.posterior_predictive["image"].isel(chain=0),
                                  seeds.posterior_predictive["image"].isel(chain=0))


def test_tv_spread_row_spreads_the_seeds_ensemble_tv_weights_and_reuses_member_0(tmp_path):
    """``DataSet.tv_spread``: one row ``DE-N, TV spread S`` for the largest N, the seeds'
    members with TV weights w S ** u_k (u = 0, -1, ...), member 0 linked from the seeds'
    store (its weight is unchanged, so are its hashes) instead of refitted."""
    dataset = table1.DataSet("unused", "phantoms", "phantom", (20,), "fine",
                             tv_spread=((20, 4.0),))
    profile = table1.Profile((dataset,), overrides=TINY, workers=1)
    members = table1.member_configs(20, 2, TINY)
    weight = members[0].tv_weight
    assert weight > 0 and members[0].init == "tv"
    sample = phantom_sample(5, 20, 16)
    store = tmp_path / "members"
    seeds, spread = table1.jobs(sample, dataset, 20, profile, members, "test", store)[-2:]
    assert [label for label, _ in spread.rows] == ["DE-2, TV spread 4"]
    assert spread.stem == "despread2" and table1.row_members("DE-2, TV spread 4") == 2
    table1.cached(tmp_path / "de2.nc", seeds.make, seeds.settings, sample)
    idata = table1.cached(tmp_path / "despread2.nc", spread.make, spread.settings, sample)[0]
    stored = posterior.config(idata)["member_configs"]
    np.testing.assert_allclose([c["tv_weight"] for c in stored], [weight, weight / 4])
    assert (tmp_path / "members_spread" / "member0.nc").samefile(store / "member0.nc")
    assert table1.config_hash(spread.settings) != table1.config_hash(seeds.settings)


def test_an_interrupted_hmc_run_resumes_from_its_run_file(tmp_path, monkeypatch):
    """The HMC job writes its draws to its run file as it goes; a sitting that finds a
    partial run there of the same configuration and data continues it instead of starting
    again, and a finished one is read back."""
    recipe = tmp_path / "tiny_nuts.toml"
    recipe.write_text('inference = "nuts"\ndepth = 1\nwidth = 8\nsteps = 5\nchains = 2\n'
                      'warmup = 5\ndraws = 6\ncheckpoint_every = 2\nmax_tree_depth = 3\n'
                      'threads = 1\n')
    dataset = table1.DataSet("unused", "phantoms 64", "phantom64", (20,), "fine", hmc=True)
    profile = table1.Profile((dataset,), overrides=TINY, workers=1, hmc_config=str(recipe),
                             hmc_overrides={"draws": 6})
    sample = phantom_sample(5, 20, 16)
    job = table1.jobs(sample, dataset, 20, profile, table1.member_configs(20, 1, TINY),
                      "test")[-1]
    assert job.resumable
    path = tmp_path / "hmc.nc"
    full, reused = table1.cached(path, job.make, job.settings, sample, job.resumable)
    assert not reused and table1.complete(posterior.load(path, trim=False), job.settings)
    # what an interruption after the first checkpoint leaves: 2 of 6 draws per chain
    partial = posterior.load(path, trim=False).isel(draw=slice(0, 2))
    posterior.save(partial, path)
    assert not table1.complete(posterior.load(path, trim=False), job.settings)
    seen = []
    real_fit = table1.fit
    monkeypatch.setattr(table1, "fit", lambda *a, **k: seen.append(k) or real_fit(*a, **k))
    resumed, reused = table1.cached(path, job.make, job.settings, sample, job.resumable)
    assert not reused and seen[0]["resume"] is not None and seen[0]["out"] == path
    assert posterior.image_draws(resumed).shape[0] == 12
    np.testing.assert_array_equal(posterior.image_draws(resumed.isel(draw=slice(0, 2))),
                                  posterior.image_draws(full.isel(draw=slice(0, 2))))
    again, reused = table1.cached(path, job.make, job.settings, sample, job.resumable)
    assert reused and len(seen) == 1
    # without resumable (the other jobs) a partial file is run again from the start
    posterior.save(partial, path)
    table1.cached(path, job.make, job.settings, sample)
    assert len(seen) == 2 and seen[-1] == {"out": None, "resume": None}


def test_calibration_files_add_recalibrated_rows_kept_like_the_raw_ones(
        tmp_path, monkeypatch, capsys):
    """``--calibration``: a row the file applies to (same configuration, view count and
    member count) is followed by its recalibrated row, on new images only; rows are kept
    from the CSV when hashes and the file's SHA-256 match; a bad file is one line, exit 2."""
    from bayes_inr.data.benchmark import build_benchmark, write_dataset
    from bayes_inr.evaluation.recalibration import calibrate, save_calibration

    data = build_benchmark(size=16, views=(4,), n_phantoms=6)  # ids 0-4 val, 5 test
    path = write_dataset(data, tmp_path / "bench.nc")
    dataset = table1.DataSet(str(path), "bench", "bench", (4,), data.attrs["protocol"])
    profile = table1.Profile((dataset,), overrides=TINY, workers=1)
    members = table1.member_configs(4, 2, TINY)
    runs = tmp_path / "runs"
    runs.mkdir()
    samples = {i: table1.benchmark_sample(data, i, 4) for i in (0, 1, 5)}
    for i in (0, 1):
        table1.run_image(samples[i], dataset, 4, i, profile, runs, members, "val")
    files = {}
    for stem, select in (("bbb", lambda d: d), ("de2", lambda d: d.isel(chain=slice(0, 2)))):
        val = [select(posterior.load(runs / f"{stem}_bench_4v_{i}.nc")) for i in (0, 1)]
        files[stem] = save_calibration(calibrate(val, benchmark=data), tmp_path / f"{stem}.json")
    recals = tuple(table1.Recalibration.load(f) for f in files.values())
    rows = table1.run_image(samples[5], dataset, 4, 5, profile, runs, members, "test",
                            recalibrations=recals)
    methods = [r["method"] for r in rows]
    assert methods[methods.index("BBB") + 1] == "BBB, recalibrated (residuals)"
    assert methods[-1] == "DE-2, recalibrated (residuals)"
    assert "MCD, per-pixel masks, recalibrated (residuals)" not in methods  # one member
    recal = next(r for r in rows if r["method"] == "BBB, recalibrated (residuals)")
    raw = next(r for r in rows if r["method"] == "BBB")
    assert recal["config_hash"] == raw["config_hash"] and recal["n_draws"] != raw["n_draws"]
    val = table1.run_image(samples[0], dataset, 4, 0, profile, runs, members, "val",
                           recalibrations=recals)
    assert not any("recalibrated" in r["method"] for r in val)  # its calibration image
    # kept from the CSV alone; a row of another calibration file is recomputed
    table1.write_tables(rows, tmp_path, "tiny")
    done = table1.read_rows(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    kept = table1.run_image(samples[5], dataset, 4, 5, profile, empty, members, "test",
                            done=done, recalibrations=recals)
    assert not list(empty.glob("*.nc"))
    assert [r["psnr"] for r in kept] == pytest.approx([r["psnr"] for r in rows])
    stale = next(k for k in done if k[-1] == "BBB, recalibrated (residuals)")
    done[stale] = done[stale] | {"calibration_sha256": "another file"}
    again = table1.run_image(samples[5], dataset, 4, 5, profile, runs, members, "test",
                             done=done, recalibrations=recals)
    assert next(r for r in again if r["method"] == stale[-1])["calibration_sha256"] == \
        recals[0].sha256
    # a bad file: one line, exit 2, before any work
    (tmp_path / "bad.json").write_text("{}")
    run = tiny_table(tmp_path, monkeypatch, (dataset,), members=2)
    with pytest.raises(SystemExit) as exit_:
        run("--calibration", str(tmp_path / "bad.json"))
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "table").exists() or not list((tmp_path / "table").rglob("*.nc"))
