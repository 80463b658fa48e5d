"""The route table of the broker and api/openapi.yaml describe the same
endpoints: a route missing from the spec, or a spec path the broker does
not serve, fails here."""
import os

from contract import broker_routes, spec_routes


def test_route_table_matches_openapi(bin_dir):
    served = broker_routes(os.path.join(bin_dir, "shoal-broker"))
    described = spec_routes()
    assert served, "the broker printed no routes"
    missing_from_spec = sorted(served - described)
    not_served = sorted(described - served)
    assert not missing_from_spec, "routes not in api/openapi.yaml: %s" % missing_from_spec
    assert not not_served, "api/openapi.yaml paths the broker does not serve: %s" % not_served
