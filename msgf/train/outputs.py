"""What a finished run leaves in --out: model.ckpt (with the run's summary), summary.json, and
the validation and test trajectories that `msgf search-thresholds` reads (no test trajectories
for a run without a test set)."""
from __future__ import annotations

import json

from msgf.checkpoint import save_checkpoint
from msgf.jsonable import jsonable
from msgf.memory import release_memory
from msgf.train import distributed
from msgf.train.evaluation import deployed_model, evaluation_batches, format_steps
from msgf.train.stages import STAGES


def write_outputs(run) -> dict:
    """Rank 0 writes the final files; every process returns the run's summary."""
    from threshold_search import format_macs

    m = run.model.eval()
    table = m.macs_table()
    results = run.position.results
    summary = {"config": run.cfg.to_dict(), "stages": list(run.stages), "results": results,
               "macs_table": {str(k): v for k, v in table.items()}, "history": run.position.history,
               "world_size": run.world.size, "splits": run.splits.record()}
    measured = [f"stage{s}" for s in run.stages if f"stage{s}" in results]
    if run.main:
        run.log.print("MACs per step: " + "  ".join(f"{k}: {format_macs(v)}" for k, v in table.items()))
        if measured:
            run.log.print(format_steps(f"final ({measured[-1]}) on the test set, {run.splits.describe('test')}",
                                       results[measured[-1]], m.config))
        elif not run.splits.has_test:
            run.log.print("no test set: no test numbers (validation figures per epoch are in log.csv)")
        save_checkpoint(m, run.out / "model.ckpt", training=jsonable(summary))
        # trajectories need a trained classifier and policy: not after the encoders' stage alone
        if run.cfg.export_trajectories and run.stages and STAGES[run.stages[-1]].episodic:
            from msgf.engine import export_trajectories

            deployed = deployed_model(run)  # the thresholds are searched on what msgf infer runs
            for which in ("val", "test"):
                path = run.out / f"{which}_trajectories.npz"
                if which == "test" and not run.splits.has_test:
                    if path.exists():  # an earlier run's, on other data: nobody should mistake it for this one's
                        path.unlink()
                        run.log.print(f"removed {path}: an earlier run's test trajectories; this run has no test set")
                    continue
                release_memory()
                export_trajectories(deployed, evaluation_batches(run, which, sharded=False), path,
                                    progress=run.opt.progress)
        (run.out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
        run.log.print(f"wrote {run.out / 'model.ckpt'}")
    distributed.barrier(run.world)
    return summary

