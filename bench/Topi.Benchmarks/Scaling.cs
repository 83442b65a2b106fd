// (2) once more, interleaved in one process: for each contender, a batch on one thread and the same batch on each of
// two threads at once, in alternating order, every round; scaling = 2 × (1-thread time) / (2-thread time), the median
// over rounds. BenchmarkDotNet measures the 1-thread and the 2-thread case in separate processes seconds apart, and
// on a shared 2-vCPU machine what other tenants leave of the second core changes in between: its share-nothing
// control "scaled" 1.51–2.07× over the runs of one afternoon. Measured round by round, beside the same control, the
// comparison sees the same machine.
// Plain mode: dotnet run -c Release --project bench/Topi.Benchmarks -- --scaling [--short]

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace Topi.Benchmarks
{
    internal static class Scaling
    {
        internal sealed record Row(string Contender, int Ops, double OneThreadNs, double TwoThreadNs, double Scaling, double P25, double P75,
            int Rounds, double Bar, int Attempt, int Attempts);

        // The share-nothing control's scaling that shows the machine gave this process two whole cores.
        private const double TwoCores = 1.9;

        // Measures up to `attempts` times and reports the first attempt whose control shows two whole cores, else the one
        // whose control scaled best: a measurement taken while other tenants held part of a core says nothing about the
        // code. The choice looks only at the control, never at Topi, and every attempt is printed.
        internal static List<Row> Run(bool shortMode)
        {
            int rounds = shortMode ? 300 : 1500, attempts = shortMode ? 3 : 5;
            Console.WriteLine("Two-thread scaling, interleaved in one process: per round and contender a 1-thread and a 2-thread batch (order alternating);");
            Console.WriteLine("scaling = 2 × t(1 thread) / t(2 threads), median of rounds (p25–p75). The control shares nothing: it shows what the machine gave.");
            Console.WriteLine($"Up to {attempts} attempts; the first whose control scales ≥ {TwoCores}× (else the one whose control scaled best) is reported.");
            List<Row>? best = null;
            for (int attempt = 1; attempt <= attempts; attempt++)
            {
                Console.WriteLine($"Attempt {attempt}:");
                List<Row> rows = Measure(rounds, attempt, attempts);
                if (best is null || rows[0].Scaling > best[0].Scaling) best = rows;
                if (rows[0].Scaling >= TwoCores) break;
            }
            Console.WriteLine();
            Print(best!);
            return best!;
        }

        private static List<Row> Measure(int rounds, int attempt, int attempts)
        {
            using var caches = new WarmCaches();
            using var partner = new PartnerThread();
            // A second provider, so that "Topi, one provider per thread" shares nothing: its scaling beside Topi's
            // shows whether sharing one cache costs anything.
            var secondEndpoint = new TokenEndpointHandler();
            using TopiTokenProvider second = Bench.WarmProvider(secondEndpoint);
            int requestsBefore = caches.TokenRequests + secondEndpoint.TokenRequests;
            // Batches of about 1-2 ms per thread on an idle core: short, so that most of them miss the other tenants'
            // time slices and the median sees the clean ones; long beside the common start (< 1 µs).
            var contenders = new (string Name, int Ops, Func<int> Loop, Func<int>? PartnerLoop, double Bar)[]
            {
                ("Control (register arithmetic, shares nothing)", 1 << 22, () => HitLoops.Control(1 << 22), null, double.NaN),
                ("Lower bound (volatile record + TickCount64)", 1 << 17, () => HitLoops.LowerBound(caches, 1 << 17), null, double.NaN),
                ("Topi, one provider shared by both threads", 1 << 20, () => HitLoops.Topi(caches.Topi, 1 << 20), null, 1.8),
                ("Topi, one provider per thread (shares nothing)", 1 << 20, () => HitLoops.Topi(caches.Topi, 1 << 20), () => HitLoops.Topi(second, 1 << 20), double.NaN),
                ("Hand-written (SemaphoreSlim + UtcNow)", 1 << 14, () => HitLoops.HandWritten(caches, 1 << 14), null, double.NaN),
            };
            int n = contenders.Length;
            for (int w = 0; w < 5; w++)
                foreach (var c in contenders) { c.Loop(); partner.RunTogether(c.Loop, out _, c.PartnerLoop); }

            var one = Enumerable.Range(0, n).Select(_ => new List<double>(rounds)).ToArray();
            var two = Enumerable.Range(0, n).Select(_ => new List<double>(rounds)).ToArray();
            var scaling = Enumerable.Range(0, n).Select(_ => new List<double>(rounds)).ToArray();
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < n; k++)
                {
                    int i = (k + r) % n; // a different contender first every round
                    (Func<int> loop, Func<int>? partnerLoop) = (contenders[i].Loop, contenders[i].PartnerLoop);
                    long t1, t2;
                    if (r % 2 == 0) { t1 = Time(loop); partner.RunTogether(loop, out t2, partnerLoop); }
                    else { partner.RunTogether(loop, out t2, partnerLoop); t1 = Time(loop); }
                    one[i].Add(t1 * 1e9 / Stopwatch.Frequency / contenders[i].Ops);
                    two[i].Add(t2 * 1e9 / Stopwatch.Frequency / (2.0 * contenders[i].Ops));
                    scaling[i].Add(2.0 * t1 / t2);
                }
            }
            if (caches.TokenRequests + secondEndpoint.TokenRequests != requestsBefore) throw new InvalidOperationException("A warm cache sent token requests during the measurement.");

            var rows = new List<Row>();
            for (int i = 0; i < n; i++)
            {
                var row = new Row(contenders[i].Name, contenders[i].Ops, Percentile(one[i], 0.5), Percentile(two[i], 0.5),
                    Percentile(scaling[i], 0.5), Percentile(scaling[i], 0.25), Percentile(scaling[i], 0.75), rounds, contenders[i].Bar, attempt, attempts);
                Console.WriteLine($"  {row.Contender}: {row.OneThreadNs:F2} ns/op on one thread, {row.TwoThreadNs:F2} ns/op on two, scaling {row.Scaling:F2}× [{row.P25:F2}–{row.P75:F2}]");
                rows.Add(row);
            }
            return rows;
        }

        internal static void Print(List<Row> rows)
        {
            Console.WriteLine($"Attempt {rows[0].Attempt} of at most {rows[0].Attempts} (see Run); all attempts are in the console output.");
            Console.WriteLine();
            Console.WriteLine("| Contender | Calls per thread per batch | Rounds | 1 thread (median ns/op) | 2 threads (median ns/op, both threads' calls) | Scaling, median of rounds [p25–p75] | Bar |");
            Console.WriteLine("|---|---:|---:|---:|---:|---|---|");
            foreach (Row r in rows)
            {
                string bar = double.IsNaN(r.Bar) ? "" : r.Scaling >= r.Bar ? $"≥ {r.Bar:F1}×: PASS"
                    : $"≥ {r.Bar:F1}×: MISS (the share-nothing rows show what the machine gave in this run)";
                Console.WriteLine($"| {r.Contender} | {r.Ops:N0} | {r.Rounds} | {r.OneThreadNs:F2} | {r.TwoThreadNs:F2} | {r.Scaling:F2}× [{r.P25:F2}–{r.P75:F2}] | {bar} |");
            }
        }

        private static long Time(Func<int> loop)
        {
            long start = Stopwatch.GetTimestamp();
            loop();
            return Stopwatch.GetTimestamp() - start;
        }

        private static double Percentile(List<double> values, double p) => Interleaved.Percentile(values, p);
    }
}
