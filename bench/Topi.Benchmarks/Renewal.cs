// (6) Token renewal under load: 4 workers call GetTokenAsync continuously while tokens of 1 s lifetime renew.
// Plain mode: dotnet run -c Release --project bench/Topi.Benchmarks -- --renewal

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace Topi.Benchmarks
{
    internal static class Renewal
    {
        // The lower bound of a call: what a worker loop costs when getting the token is one volatile read.
        private sealed class FloorContender : TokenContender
        {
            private static string s_token = Bench.AccessToken;
            internal override string Name => "Floor (volatile read, never renews)";
            internal override void Create(TokenEndpointHandler endpoint) { }
            internal override bool Call(out int length) { length = Volatile.Read(ref s_token).Length; return true; }
            internal override Task CallAsync(long[] done, int index) => throw new NotSupportedException("The floor is a row of the renewal mode only.");
        }

        internal sealed record Row(string Name, long Calls, long Waited, int TokenRequests, double WorstUs,
            long Over10Us, long Over100Us, long Over1Ms, double Seconds);

        private sealed class WorkerStats
        {
            internal long Calls, Waited, Over10Us, Over100Us, Over1Ms, WorstTicks, Sink;
        }

        internal static List<Row> Run(TimeSpan duration, int workers, TimeSpan delay)
        {
            Console.WriteLine($"Token renewal under load: {workers} worker threads call GetTokenAsync in a loop for {duration.TotalSeconds} s per contender;");
            Console.WriteLine($"tokens live 1 s (expires_in 1), the in-process token endpoint answers after {delay.TotalMilliseconds} ms. Latency = Stopwatch around each call.");
            Console.WriteLine($"'Waited' = the call did not complete synchronously. Machine: {Environment.ProcessorCount} logical cores, so {workers} busy workers also measure OS preemption (see the floor row).");
            Console.WriteLine();
            var rows = new List<Row>();
            foreach (TokenContender c in new TokenContender[] { new FloorContender(), new TopiContender(), new HandWrittenContender(), new MsalContender() })
            {
                var endpoint = new TokenEndpointHandler(delay, expiresIn: 1);
                // Topi with its defaults: ExpirySkew 60 s is clamped to half the 1 s lifetime; RefreshAhead 5 min to a fifth of the rest.
                c.Create(endpoint);
                c.Call(out _); // the first token, before the clock starts
                int requestsBefore = endpoint.TokenRequests;
                var stats = new WorkerStats[workers];
                var threads = new Thread[workers];
                using var start = new Barrier(workers + 1);
                int stop = 0;
                for (int w = 0; w < workers; w++)
                {
                    var s = stats[w] = new WorkerStats();
                    threads[w] = new Thread(() =>
                    {
                        start.SignalAndWait();
                        long over10 = Stopwatch.Frequency / 100_000, over100 = Stopwatch.Frequency / 10_000, over1ms = Stopwatch.Frequency / 1_000;
                        while (Volatile.Read(ref stop) == 0)
                        {
                            long t0 = Stopwatch.GetTimestamp();
                            bool sync = c.Call(out int length);
                            long elapsed = Stopwatch.GetTimestamp() - t0;
                            s.Calls++;
                            s.Sink += length;
                            if (!sync) s.Waited++;
                            if (elapsed > s.WorstTicks) s.WorstTicks = elapsed;
                            if (elapsed > over10) { s.Over10Us++; if (elapsed > over100) { s.Over100Us++; if (elapsed > over1ms) s.Over1Ms++; } }
                        }
                    }) { IsBackground = true, Name = "renewal-worker-" + w };
                    threads[w].Start();
                }
                start.SignalAndWait();
                long began = Stopwatch.GetTimestamp();
                Thread.Sleep(duration);
                Volatile.Write(ref stop, 1);
                foreach (Thread t in threads) t.Join();
                double seconds = Stopwatch.GetElapsedTime(began).TotalSeconds;
                int requests = endpoint.TokenRequests - requestsBefore;
                c.Release();
                long calls = 0, waited = 0, o10 = 0, o100 = 0, o1 = 0, worst = 0;
                foreach (WorkerStats s in stats)
                {
                    calls += s.Calls; waited += s.Waited; o10 += s.Over10Us; o100 += s.Over100Us; o1 += s.Over1Ms;
                    worst = Math.Max(worst, s.WorstTicks);
                }
                var row = new Row(c.Name, calls, waited, requests, worst * 1e6 / Stopwatch.Frequency, o10, o100, o1, seconds);
                rows.Add(row);
                Console.WriteLine($"  {row.Name}: {row.Calls:N0} calls, {row.Waited:N0} waited, {row.TokenRequests:N0} token requests, worst {row.WorstUs:F0} µs");
                GC.Collect();
                Thread.Sleep(200);
            }
            Console.WriteLine();
            Print(rows);
            return rows;
        }

        internal static void Print(List<Row> rows)
        {
            Console.WriteLine("| Contender | Calls | Calls/s | Token requests | Calls that waited | Worst call (µs) | Calls > 10 µs | > 100 µs | > 1 ms | Bar (Topi: no call waits) |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
            foreach (Row r in rows)
            {
                string bar = r.Name == "Topi" ? (r.Waited == 0 ? "PASS" : "MISS") : "";
                Console.WriteLine($"| {r.Name} | {r.Calls:N0} | {r.Calls / r.Seconds:N0} | {r.TokenRequests:N0} | {r.Waited:N0} | {r.WorstUs:N0} | {r.Over10Us:N0} | {r.Over100Us:N0} | {r.Over1Ms:N0} | {bar} |");
            }
        }
    }
}
