from benchmarks import search_overhead


def test_the_two_variants_run_the_same_search():
    # the benchmark times the same work two ways: the caches must not change what the search finds
    cached, again = search_overhead.run(3, cached=True), search_overhead.run(3, cached=False)
    assert (cached["archive"], cached["hv"]) == (again["archive"], again["hv"])
    assert cached["save_ms"] > 0 and again["total_ms"] >= again["save_ms"]
