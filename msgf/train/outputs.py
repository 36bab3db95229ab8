"""What a finished run leaves in --out: model.ckpt (with the run's summary), summary.json, and
the validation and test trajectories that `msgf search-thresholds` reads."""
from __future__ import annotations

import json

from msgf.checkpoint import save_checkpoint
from msgf.jsonable import jsonable
from msgf.train import distributed
from msgf.train.evaluation import evaluation_batches, format_steps
from msgf.train.stages import STAGES


def write_outputs(run) -> dict:
    """Rank 0 writes the final files; every process returns the run's summary."""
    from threshold_search import format_macs

    m = run.model.eval()
    table = m.macs_table()
    results = run.position.results
    summary = {"config": run.cfg.to_dict(), "stages": list(run.stages), "results": results,
               "macs_table": {str(k): v for k, v in table.items()}, "history": run.position.history,
               "world_size": run.world.size}
    measured = [f"stage{s}" for s in run.stages if f"stage{s}" in results]
    if run.main:
        run.log.print("MACs per step: " + "  ".join(f"{k}: {format_macs(v)}" for k, v in table.items()))
        if measured:
            run.log.print(format_steps(f"final ({measured[-1]}) on the test split", results[measured[-1]], m.config))
        save_checkpoint(m, run.out / "model.ckpt", training=jsonable(summary))
        # trajectories need a trained classifier and policy: not after the encoders' stage alone
        if run.cfg.export_trajectories and run.stages and STAGES[run.stages[-1]].episodic:
            from msgf.engine import export_trajectories

            for which in ("val", "test"):
                export_trajectories(m, evaluation_batches(run, which, sharded=False),
                                    run.out / f"{which}_trajectories.npz", progress=run.opt.progress)
        (run.out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
        run.log.print(f"wrote {run.out / 'model.ckpt'}")
    distributed.barrier(run.world)
    return summary

