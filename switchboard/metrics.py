"""The metric catalogue (design §4.4), built on a registry the caller injects.

Every metric the daemon exports is declared here so that the alert rules and
the dashboard can be checked against one list (`Metrics.names()`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from switchboard import __version__

PREFIX = "switchboard_"

# Publish lateness is judged against a 50 ms p99 target, so the buckets are
# dense below a second and still show multi-minute waits (rate limits).
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = PREFIX
        r = registry
        self.build_info = Gauge(f"{p}build_info", "Build of the running daemon", ["version"],
                                registry=r)
        self.build_info.labels(version=__version__).set(1)
        self.config_last_reload_successful = Gauge(
            f"{p}config_last_reload_successful",
            "1 if the last configuration load or reload succeeded, else 0", registry=r)
        self.config_last_reload_success_timestamp_seconds = Gauge(
            f"{p}config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load", registry=r)
        self.ready = Gauge(f"{p}ready", "1 once the daemon serves, 0 while starting or draining",
                           registry=r)
        self.incidents_active = Gauge(f"{p}incidents_active", "Incidents not yet resolved",
                                      registry=r)
        self.incident_oldest_open_seconds = Gauge(
            f"{p}incident_oldest_open_seconds",
            "Age of the oldest unresolved incident (0 when none)", registry=r)
        self.channel_under_incident = Gauge(
            f"{p}channel_under_incident",
            "1 while the channel is under the control of an incident (incl. cooldown)",
            ["channel"], registry=r)
        self.posts_published = Counter(f"{p}posts_published", "Posts published",
                                       ["channel", "kind"], registry=r)
        self.posts_suppressed = Counter(f"{p}posts_suppressed",
                                        "Marketing posts suppressed by an incident", ["channel"],
                                        registry=r)
        self.posts_failed = Counter(f"{p}posts_failed", "Posts that failed to publish",
                                    ["channel", "reason"], registry=r)
        self.posts_scheduled = Gauge(f"{p}posts_scheduled", "Posts waiting to be published",
                                     registry=r)
        self.posts_unknown = Gauge(
            f"{p}posts_unknown",
            "Posts whose send was interrupted by a crash and need review", registry=r)
        self.posts_held = Gauge(f"{p}posts_held", "Posts held for marketing review", registry=r)
        self.publish_lateness_seconds = Histogram(
            f"{p}publish_lateness_seconds", "Send start minus due time of scheduled posts",
            buckets=LATENESS_BUCKETS, registry=r)
        self.channel_last_error_timestamp_seconds = Gauge(
            f"{p}channel_last_error_timestamp_seconds",
            "Unix time of the channel's last publish error", ["channel"], registry=r)
        self.feed_signals = Counter(f"{p}feed_signals", "Signals received from feeds",
                                    ["feed", "status"], registry=r)
        self.feed_errors = Counter(f"{p}feed_errors", "Feed deliveries or polls rejected",
                                   ["feed", "reason"], registry=r)
        self.feed_last_success_timestamp_seconds = Gauge(
            f"{p}feed_last_success_timestamp_seconds",
            "Unix time of the feed's last good delivery or poll", ["feed"], registry=r)
        self.runbook_steps = Counter(f"{p}runbook_steps", "Runbook steps run",
                                     ["runbook", "action", "result"], registry=r)
        self.operational_update_overdue = Gauge(
            f"{p}operational_update_overdue",
            "1 while an incident's operational update is overdue", ["incident"], registry=r)
        self.login_failures = Counter(
            f"{p}login_failures", "Failed password sign-ins, by why (never by name)",
            ["reason"], registry=r)

        self.store_healthy = Gauge(
            f"{p}store_healthy",
            "1 while the database file is the one the daemon writes; 0: it was deleted, "
            "replaced or became unwritable, and nothing is recorded or sent", registry=r)
        self.store_failed = Gauge(
            f"{p}store_failed", "1 for the reason the store stopped taking writes",
            ["reason"], registry=r)
        self.leader = Gauge(
            f"{p}leader", "1 while this daemon holds the leader lease and may claim and "
                          "send posts; 0 on a standby (or a leader that fenced itself)",
            registry=r)
        self.leader_epoch = Gauge(
            f"{p}leader_epoch", "The leader lease's epoch as this daemon last saw it "
                                "(one more at each takeover)", registry=r)

    def names(self) -> set[str]:
        """Every sample name the registry can expose (for dashboard/rule checks)."""
        out: set[str] = set()
        for metric in self.registry.collect():
            out.add(metric.name)
            if metric.type == "counter":
                # A labelled counter shows no sample until first used.
                out.update({f"{metric.name}_total", f"{metric.name}_created"})
            for sample in metric.samples:
                out.add(sample.name)
        return out
