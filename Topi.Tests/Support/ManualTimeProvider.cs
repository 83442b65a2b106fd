namespace Topi.Tests.Support;

/// <summary>
/// A <see cref="TimeProvider"/> that tests drive by hand. It keeps two clocks, like a real machine:
/// a monotonic one (timestamps, which drive timers) and a wall clock (<see cref="GetUtcNow"/>).
/// <see cref="Advance"/> moves both and fires due timers in order; <see cref="JumpWallClock"/> moves
/// only the wall clock (someone set the clock, or the machine slept and the monotonic clock stopped).
/// </summary>
public sealed class ManualTimeProvider : TimeProvider
{
    private readonly object _sync = new();
    private readonly List<ManualTimer> _timers = new();
    private readonly List<TimeSpan> _createdDueTimes = new();
    private DateTimeOffset _wall;
    private long _ticks;

    public ManualTimeProvider(DateTimeOffset? start = null) => _wall = start ?? new DateTimeOffset(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() { lock (_sync) return _ticks; }

    public override DateTimeOffset GetUtcNow() { lock (_sync) return _wall; }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        lock (_sync) _createdDueTimes.Add(dueTime);
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>The due time each timer was created with, in order (Task.Delay and timeouts create one each).</summary>
    public IReadOnlyList<TimeSpan> CreatedDueTimes { get { lock (_sync) return _createdDueTimes.ToArray(); } }

    /// <summary>The number of timers that are armed now.</summary>
    public int ArmedTimers { get { lock (_sync) return _timers.Count(t => t.DueAt is not null); } }

    /// <summary>Moves both clocks forward, firing every timer that falls due, in order, on this thread.</summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        long target;
        lock (_sync) target = _ticks + by.Ticks;
        while (true)
        {
            ManualTimer? next;
            lock (_sync)
            {
                next = _timers.Where(t => t.DueAt <= target).OrderBy(t => t.DueAt).FirstOrDefault();
                long to = next?.DueAt ?? target;
                _wall += TimeSpan.FromTicks(to - _ticks);
                _ticks = to;
                if (next is null) return;
                next.Rearm();
            }
            next.Fire();
        }
    }

    /// <summary>Moves only the wall clock (negative moves it back). Fires no timer.</summary>
    public void JumpWallClock(TimeSpan by) { lock (_sync) _wall += by; }

    private sealed class ManualTimer : ITimer
    {
        private readonly ManualTimeProvider _owner;
        private readonly TimerCallback _callback;
        private readonly object? _state;
        private long _period;

        public ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state)
        {
            _owner = owner;
            _callback = callback;
            _state = state;
        }

        public long? DueAt { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (_owner._sync)
            {
                _owner._timers.Remove(this);
                _period = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks;
                DueAt = dueTime == Timeout.InfiniteTimeSpan ? null : _owner._ticks + Math.Max(0, dueTime.Ticks);
                if (DueAt is not null) _owner._timers.Add(this);
            }
            return true;
        }

        // Caller holds the owner's lock.
        public void Rearm()
        {
            _owner._timers.Remove(this);
            DueAt = _period > 0 ? DueAt + _period : null;
            if (DueAt is not null) _owner._timers.Add(this);
        }

        public void Fire() => _callback(_state);

        public void Dispose() { lock (_owner._sync) { _owner._timers.Remove(this); DueAt = null; } }

        public ValueTask DisposeAsync() { Dispose(); return default; }
    }
}
