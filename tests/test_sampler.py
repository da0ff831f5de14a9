"""The training sample stream: rank-disjoint, reproducible, resumable by samples seen."""

from robust_style.transformer_net.data import StepSampler


def stream(**kw) -> list[tuple[int, int]]:
    return list(StepSampler(7, **kw))


def test_ranks_take_disjoint_slots_that_together_equal_one_process() -> None:
    single = stream(batch_size=4, seed=1, start_step=0, total_steps=5)
    r0 = stream(batch_size=2, seed=1, start_step=0, total_steps=5, rank=0, world_size=2)
    r1 = stream(batch_size=2, seed=1, start_step=0, total_steps=5, rank=1, world_size=2)
    assert not set(r0) & set(r1)
    merged = [x for s in range(5) for x in r0[2 * s:2 * s + 2] + r1[2 * s:2 * s + 2]]
    assert merged == single


def test_every_photo_once_per_epoch_and_crops_differ_between_epochs() -> None:
    slots = stream(batch_size=7, seed=3, start_step=0, total_steps=2)
    first, second = slots[:7], slots[7:]
    assert sorted(i for i, _ in first) == list(range(7)) == sorted(i for i, _ in second)
    assert {c for _, c in first}.isdisjoint({c for _, c in second})


def test_resume_continues_the_same_stream_even_with_another_batch_size() -> None:
    full = stream(batch_size=4, seed=0, start_step=0, total_steps=6)
    head = StepSampler(7, 4, seed=0, start_step=0, total_steps=3)
    seen = head.slots_before(3)
    assert seen == 12
    tail = stream(batch_size=2, seed=0, start_step=3, total_steps=9, start_slot=seen)
    assert list(head) + tail == full
