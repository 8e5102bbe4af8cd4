"""Why the router would send a message where it would, without sending it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from policies.base import Ranking
from router.config import RouterSettings
from router.health import HealthView
from router.prepare import Prepared
from router.runtime import ProviderRuntime, RouteJob, route_groups


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the router would send a message where it would, without sending it."""

    scene: str
    rankings: Mapping[str, Ranking]  # route group ("mainland", "international") -> ranking
    unrenderable: Mapping[str, str]  # provider -> why it cannot carry this message
    unknowns: Mapping[str, str] = field(default_factory=dict)  # provider -> an unknown's fate
    # Numbers that would never be sent (mobile as given -> why): no group ranks them.
    invalid: Mapping[str, str] = field(default_factory=dict)


def explain(
    prepared: Prepared,
    settings: RouterSettings,
    runtimes: Mapping[str, ProviderRuntime],
    health: HealthView,
) -> Explanation:
    """The ranking each route group of ``prepared`` would get, with reasons."""
    job = RouteJob("explain", prepared.scene, prepared.renders, 0.0, 0.0)
    rankings: dict[str, Ranking] = {}
    for group in route_groups(prepared.recipients.trackers, runtimes):
        label = "mainland" if group[0].mobile.is_mainland else "international"
        rankings.setdefault(label, health.rank(job, group))
    unrenderable = {
        name: "no rendering for this message (template-only provider, unapproved "
        "template, or missing template options)"
        for name in runtimes
        if name not in prepared.renders
    }
    unknowns = {name: unknown_fate(settings, runtimes[name]) for name in runtimes}
    invalid = {r.mobile: r.error or "invalid" for r in prepared.recipients.invalid}
    return Explanation(prepared.scene, rankings, unrenderable, unknowns, invalid)


def unknown_fate(settings: RouterSettings, rt: ProviderRuntime) -> str:
    """What becomes of a recipient whose attempt at ``rt``'s provider ends unknown (timeout
    after the request was written, 5xx, unreadable answer)."""
    r = settings.resilience
    if rt.replay is not None and r.replay_unknown:
        how = "resent under the same request id, which the provider refuses if it took it"
    elif rt.query is not None and r.reconcile_window_s > 0:
        how = f"settled by asking the provider's send records for up to {r.reconcile_window_s:g} s"
    elif rt.puller is not None and r.reconcile_window_s > 0:
        how = f"settled by pulling receipts for up to {r.reconcile_window_s:g} s"
    elif rt.puller is not None:
        how = "stays unknown unless a receipt arrives (reconcile_window_s = 0)"
    else:
        how = "stays unknown: the provider offers no way to query a send"
    if settings.resends_unknown(rt.provider.name):
        return f"{how}; if still unknown, sent again elsewhere (at_least_once)"
    return f"{how}; if still unknown, never sent again (at_most_once)"
