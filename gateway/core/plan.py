"""The plan driver: a translation plan (:class:`gateway.translate.base.Plan`) carried out one CALL at a time.

Every party that translates drives its plans through :class:`PlanRun`: the charger session (each plan is one job on
a call lane, :mod:`gateway.core.session`), a mirror feed toward a mirror of another version
(:mod:`gateway.fanout.mirror`), and the translators' table tests (``tests/unit/translate_harness.py``). Pure: the
driver sends ``run.call`` however it sends CALLs, and reports what came back.

    run = PlanRun(plan)                  # plan.calls is not empty (a plan with ``reply``/``error`` answers at once)
    send(run.call)                       # the CALL to send now
    run.answered(payload) -> bool        # its CALLRESULT; True: another CALL follows (send run.call again)
    run.failed(code, description)        # its CALLERROR, or "Timeout": True/False as answered() when the plan's
                                         # on_error substituted an answer, None when the plan ends with the error
    run.finish() -> payload              # every CALL answered: the answer for the side that asked
"""

from __future__ import annotations

from gateway.translate.base import JsonDict, OutCall, Plan

__all__ = ["PlanRun"]


class PlanRun:
    """One plan in progress: which CALL is next and the answers so far."""

    __slots__ = ("index", "plan", "results")

    def __init__(self, plan: Plan) -> None:
        assert plan.calls, "a plan without calls answers at once (reply/error)"
        self.plan = plan
        self.index = 0
        self.results: list[JsonDict] = []

    @property
    def call(self) -> OutCall:
        """The CALL to send now."""
        return self.plan.calls[self.index]

    def answered(self, payload: JsonDict) -> bool:
        """The current CALL's answer; True when another CALL follows."""
        self.results.append(payload)
        self.index += 1
        return self.index < len(self.plan.calls)

    def failed(self, code: str, description: str) -> bool | None:
        """The current CALL got a CALLERROR (``code`` as received) or no answer in time (``"Timeout"``). The plan's
        ``on_error`` may substitute an answer (then as :meth:`answered`); None: the plan ends with the error."""
        hook = self.plan.on_error
        substitute = hook(self.index, code, description) if hook is not None else None
        if substitute is None:
            return None
        return self.answered(substitute)

    def finish(self) -> JsonDict:
        """Every CALL answered: the answer to the origin (``plan.finish`` may update the translator's state and fill
        ``then_to_*``)."""
        finish = self.plan.finish
        assert finish is not None, "a plan with calls has a finish"
        return finish(self.results)
