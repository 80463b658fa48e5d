"""GET /metrics: request counters by route/method/status, the request
duration histogram, and the live-session and user gauges."""

import math
import re

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import UUID_RE, expect, make_user, metric, new_uuid, parse_metrics, wait_until

ROUTE_LABEL = 'shoal_http_requests_total'
HIST = 'shoal_http_request_duration_seconds'


def scrape(broker):
    r = broker.api.get("/metrics")
    expect(r, 200)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    return r.text, parse_metrics(r.text)


def requests_total(m, **labels):
    return metric(m, ROUTE_LABEL, **labels)


def test_types_declared(broker):
    text, _ = scrape(broker)
    for name, kind in ((ROUTE_LABEL, "counter"), (HIST, "histogram"),
                       ("shoal_sessions_live", "gauge"), ("shoal_users_total", "gauge")):
        assert re.search(rf"^# TYPE {name} {kind}$", text, re.M), f"no '# TYPE {name} {kind}'"


def test_request_counter_increases(broker):
    _, before = scrape(broker)
    for _ in range(3):
        expect(broker.api.get("/healthz"), 200)
    _, after = scrape(broker)
    sel = dict(route="/healthz", method="GET", status="200")
    assert requests_total(after, **sel) == requests_total(before, **sel) + 3
    # the previous scrape counts under its own route
    sel = dict(route="/metrics", method="GET", status="200")
    assert requests_total(after, **sel) >= requests_total(before, **sel) + 1


def test_counter_uses_route_patterns_and_statuses(broker):
    u = make_user(broker)
    _, before = scrape(broker)
    sid = new_uuid()
    for _ in range(2):
        expect(u.http.get(f"/v1/sessions/{sid}", params={"ip": "127.0.0.1"}), 404, "not_found")
    expect(u.http.get(f"/v1/sessions/{u.session_id}", params={"ip": "127.0.0.1"}), 200)
    expect(u.http.get(f"/v1/sessions/{u.session_id}", params={"ip": "127.0.0.2"}), 409)
    expect(broker.api.get("/v1/sessions"), 400, "session_missing")
    expect(broker.api.delete("/v1/users"), 405, "method_not_allowed")
    text, after = scrape(broker)
    pat = "/v1/sessions/{sid}"
    for status, n in (("404", 2), ("200", 1), ("409", 1)):
        got = requests_total(after, route=pat, method="GET", status=status) - \
            requests_total(before, route=pat, method="GET", status=status)
        assert got == n, (status, got)
    assert requests_total(after, route="/v1/sessions", method="GET", status="400") == \
        requests_total(before, route="/v1/sessions", method="GET", status="400") + 1
    # 405: any series (the route/method labels of a refused method are the broker's choice)
    assert requests_total(after, status="405") == requests_total(before, status="405") + 1
    # no concrete ids in labels: the label set stays small
    for (name, labels) in after:
        for _, v in labels:
            assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", v), f"id in a label: {name} {v}"
    assert sid not in text and u.session_id not in text


def test_unknown_paths_do_not_make_new_series(broker):
    _, before = scrape(broker)
    paths = [f"/nope/{new_uuid()}" for _ in range(3)]
    for p in paths:
        assert broker.api.get(p).status_code == 404
    text, after = scrape(broker)
    for p in paths:
        assert p not in text
    assert requests_total(after, status="404") == requests_total(before, status="404") + 3
    new_series = {k for k in after if k[0] == ROUTE_LABEL} - {k for k in before
                                                              if k[0] == ROUTE_LABEL}
    assert len(new_series) <= 2, new_series          # at most one 404 series (+ /metrics)


def histogram_series(m):
    """{labels without le: {"buckets": [(le, v)], "sum": x, "count": n}}"""
    out = {}
    for (name, labels), v in m.items():
        d = dict(labels)
        if name == HIST + "_bucket":
            le = d.pop("le")
            out.setdefault(frozenset(d.items()), {}).setdefault("buckets", []).append(
                (math.inf if le == "+Inf" else float(le), v))
        elif name == HIST + "_sum":
            out.setdefault(frozenset(d.items()), {})["sum"] = v
        elif name == HIST + "_count":
            out.setdefault(frozenset(d.items()), {})["count"] = v
    return out


def test_duration_histogram(broker):
    _, before = scrape(broker)
    for _ in range(5):
        expect(broker.api.get("/healthz"), 200)
    _, after = scrape(broker)
    series = histogram_series(after)
    assert series, "no shoal_http_request_duration_seconds series"
    for labels, h in series.items():
        assert {"buckets", "sum", "count"} <= set(h), (labels, h)
        buckets = sorted(h["buckets"])
        assert buckets[-1][0] == math.inf, "no +Inf bucket"
        assert len(buckets) >= 5, buckets
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"buckets are not cumulative: {buckets}"
        assert buckets[-1][1] == h["count"]
        assert h["sum"] >= 0
    total_before = sum(h.get("count", 0) for h in histogram_series(before).values())
    total_after = sum(h["count"] for h in series.values())
    assert total_after >= total_before + 6       # 5 healthz + the previous scrape
    sum_before = sum(h.get("sum", 0) for h in histogram_series(before).values())
    assert sum(h["sum"] for h in series.values()) > sum_before
    # every request counted once in the histogram and once in the counter
    assert total_after == sum(v for (n, _), v in after.items() if n == ROUTE_LABEL)


def test_sessions_live_and_users_total(broker):
    _, m = scrape(broker)
    live0 = metric(m, "shoal_sessions_live")
    users0 = metric(m, "shoal_users_total")
    u = make_user(broker)
    s2, http2 = u.new_session()

    def gauges(live, users):
        _, m = scrape(broker)
        got = (metric(m, "shoal_sessions_live"), metric(m, "shoal_users_total"))
        return got == (live, users) and got

    wait_until(lambda: gauges(live0 + 2, users0 + 1), timeout=5, interval=0.2,
               what="shoal_sessions_live +2 and shoal_users_total +1")
    expect(u.http.delete(f"/v1/sessions/{s2}"), 200)
    wait_until(lambda: gauges(live0 + 1, users0 + 1), timeout=5, interval=0.2,
               what="shoal_sessions_live back down by one after a logout")


def test_metrics_needs_no_session_and_has_no_ids(broker):
    u = make_user(broker)
    text, m = scrape(broker)
    assert u.user_id not in text and u.auth_id not in text
    for (name, labels) in m:
        for _, v in labels:
            assert not UUID_RE.match(v)
