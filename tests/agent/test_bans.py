"""Failed logins, without a server: bans per address, slowing per user, a clock we turn."""

from agent.bans import MAX_BAN, MEMORY, Bans


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def bans(clock, **options):
    return Bans(threshold=3, window=60, ban_seconds=10, delay=1, slow_delay=5, clock=clock,
                **options)


def fail(bans, times, address="192.0.2.1", user="acme"):
    return [bans.failed(address, user) for _ in range(times)]


def test_an_address_is_banned_at_the_threshold_within_the_window():
    clock = Clock()
    policy = bans(clock)
    # Given two failures, then a third after the first left the window
    fail(policy, 2)
    clock.now += 61
    assert [v.ban for v in fail(policy, 1)] == [0]
    assert policy.banned("192.0.2.1") == 0
    # When two more come within the window
    verdicts = fail(policy, 2)
    # Then the last one bans the address, and it only
    assert [v.ban for v in verdicts] == [0, 10]
    assert policy.banned("192.0.2.1") == 10
    assert policy.banned("192.0.2.2") == 0


def test_a_ban_ends_and_a_repeat_ban_lasts_twice_as_long():
    clock = Clock()
    policy = bans(clock)
    fail(policy, 3)
    clock.now += 10
    assert policy.banned("192.0.2.1") == 0
    # The address starts afresh: one failure does not ban it again
    assert fail(policy, 1)[0].ban == 0
    assert [v.ban for v in fail(policy, 2)] == [0, 20]
    clock.now += 20
    assert fail(policy, 3)[-1].ban == 40


def test_bans_double_up_to_a_week_and_are_forgotten_a_day_after_their_end():
    clock = Clock()
    policy = bans(clock)
    for _ in range(20):
        ban = fail(policy, 3)[-1].ban
        clock.now += ban
    assert ban == MAX_BAN
    clock.now += MEMORY
    assert fail(policy, 3)[-1].ban == 10


def test_a_user_failing_from_many_addresses_is_slowed_but_no_address_is_banned():
    clock = Clock()
    policy = bans(clock)
    # Given failures for acme from four addresses, two each: under every address's threshold
    verdicts = [v for n in range(4) for v in fail(policy, 2, address=f"192.0.2.{n}")]
    # Then the failures past the user's threshold are answered slowly, logged once
    assert [v.delay for v in verdicts] == [1, 1, 1, 5, 5, 5, 5, 5]
    assert [v.user_slowed for v in verdicts] == [False] * 3 + [True] + [False] * 4
    # And no address is banned: the owner, who knows the password, logs in as usual
    assert not any(v.ban for v in verdicts)
    assert all(policy.banned(f"192.0.2.{n}") == 0 for n in range(4))
    # And other users are not slowed
    assert fail(policy, 1, address="192.0.2.9", user="globex")[0].delay == 1
    # And once the window passed, acme's failures are answered at the usual pace again
    clock.now += 61
    assert fail(policy, 1, address="192.0.2.9")[0].delay == 1


def test_what_no_longer_counts_is_forgotten():
    clock = Clock()
    policy = bans(clock)
    for n in range(100):
        policy.failed(f"192.0.2.{n}", f"user{n}")
    clock.now += 61
    policy.failed("198.51.100.1", "someone")
    assert len(policy._by_address) == len(policy._by_user) == 1
