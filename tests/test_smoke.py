def test_publish_and_stream(acme):
    from tests.support import sse_stream, take, unique

    user = unique()
    token = acme.token(user)
    with sse_stream(acme.base_url, token) as events:
        stored = acme.publish_ok({"recipient": user, "data": {"n": 1}})
        (event,) = take(events, 1)
    assert event.id == stored[0]["id"]
