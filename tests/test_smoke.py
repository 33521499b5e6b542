async def test_world_builds_and_me_answers(world):
    data = await world["dev"].ok(
        "{ me { email isSuperAdmin roleBindings { role application environment } } }"
    )
    assert data["me"]["email"] == "dev@example.com"
    assert data["me"]["isSuperAdmin"] is False
    assert data["me"]["roleBindings"] == [
        {"role": "BUILD_AND_DEPLOY", "application": "shop", "environment": "*"}
    ]
