"""Models trained on what the controller sees: a model trained on an onboard estimate runs only on that estimate
(pre-flight), and the shipped onboard pair (models/default_flow.pt behind models/mb_flow.pt) is such a pair, the
one its provenance says validation chose, and the main job's."""

from __future__ import annotations

import pytest

from conftest import HEXAPOD


def test_a_model_trained_on_an_estimate_runs_only_on_that_estimate():
    from pathlib import Path

    from legadapt.controller.preflight import PreflightError, check_state_source

    check_state_source(Path("m.pt"), None, "estimated")  # older checkpoints: trained on the truth
    check_state_source(Path("m.pt"), "privileged", "estimated+flow")  # the truth stands in for any estimate
    check_state_source(Path("m.pt"), "estimated+flow", "estimated+flow")
    with pytest.raises(PreflightError, match=r"trained on states from 'estimated\+flow'.*state_source: estimated\+flow"):
        check_state_source(Path("m.pt"), "estimated+flow", "estimated")
    # logs of several sources (legadapt train writes 'mixed: a, b'): any of them, and only those
    check_state_source(Path("m.pt"), "mixed: estimated+flow, privileged", "estimated+flow")
    check_state_source(Path("m.pt"), "mixed: estimated+flow, privileged", "privileged")
    with pytest.raises(PreflightError, match=r"state_source: estimated\+flow or privileged"):
        check_state_source(Path("m.pt"), "mixed: estimated+flow, privileged", "estimated")


def test_the_shipped_onboard_models_were_trained_on_the_flow_fused_estimate_and_the_main_job_runs_them():
    """models/default_flow.pt and its plain model models/mb_flow.pt: the default recipes trained on the states the
    controller sees with flow; they run there (GrBAL behind the plain model, as the default does), are refused on any
    other source, and the main job runs them. The training kept is the one its provenance says the validation logs
    chose (the lowest pose errors after the horizon), not another seed."""
    import json
    from pathlib import Path

    from legadapt.config import load_config
    from legadapt.controller.preflight import PreflightError, check_state_source
    from legadapt.dynamics.checkpoint import load_checkpoint
    from legadapt.features import make_spec
    from legadapt.resources import shipped

    spec = make_spec("per_side", 0.1, HEXAPOD)
    path, plain = shipped("models", "default_flow.pt"), shipped("models", "mb_flow.pt")
    ck, plain_ck = load_checkpoint(path, spec), load_checkpoint(plain, spec)
    assert ck.meta["adaptation"]["runtime"] == {"plain_model": "mb_flow.pt", "lr_scale": 0.3}
    assert plain_ck.adapter_kind == "mb"
    for p, c in ((path, ck), (plain, plain_ck)):
        trained_on = c.meta["training"]["state_source"]
        assert trained_on == "estimated+flow"
        check_state_source(Path(p), trained_on, "estimated+flow")
        for other in ("privileged", "estimated", "estimated+mocap"):
            with pytest.raises(PreflightError, match="state_source: estimated\\+flow"):
                check_state_source(Path(p), trained_on, other)
    selection = json.loads(path.with_suffix(".json").read_text())["selection"]["after_the_step"]
    best = min(selection, key=lambda k: (selection[k]["position_cm"], selection[k]["heading_deg"]))
    assert best == min(selection, key=lambda k: selection[k]["heading_deg"]), "one training wins both pose errors"
    assert best == f"seed {ck.meta['training']['config']['seed']}", "the shipped training is the one validation chose"
    main = load_config(shipped("configs", "sim_limp_leg.yaml"))
    assert Path(main.controller.model).name == "default_flow.pt" and main.controller.state_source == "estimated+flow"
