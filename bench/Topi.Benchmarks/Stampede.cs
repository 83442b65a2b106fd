// (5) Cold-cache stampede: many concurrent callers on an empty cache, the token endpoint answering after a delay.
// Plain mode (BenchmarkDotNet cannot print counts): dotnet run -c Release --project bench/Topi.Benchmarks -- --stampede

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace Topi.Benchmarks
{
    internal static class Stampede
    {
        internal sealed record Row(string Name, int Callers, int[] TokenRequests, int[] DiscoveryRequests,
            double ColdMs, double LaunchMs, double LastMs, double WakeMs, double Ratio);

        internal static List<Row> Run(int trials, int callers, TimeSpan delay)
        {
            Console.WriteLine($"Cold-cache stampede: {callers:N0} concurrent callers on an empty cache, token endpoint (in process) answering after {delay.TotalMilliseconds} ms;");
            Console.WriteLine($"fresh provider/app and endpoint per trial, {trials} trials after one untimed warm-up trial, medians. Callers are started in a loop on one thread.");
            Console.WriteLine();
            var rows = new List<Row>();
            foreach (TokenContender c in new TokenContender[] { new TopiContender(), new HandWrittenContender(), new MsalContender() })
            {
                // Warm-up: JIT the cold and the stampede paths once.
                Cold(c, delay);
                Storm(c, callers, delay);
                var cold = new List<double>();
                var launch = new List<double>();
                var last = new List<double>();
                var wake = new List<double>();
                var tokenRequests = new List<int>();
                var discovery = new List<int>();
                for (int t = 0; t < trials; t++)
                {
                    cold.Add(Cold(c, delay));
                    (double launchMs, double lastMs, double wakeMs, int requests, int discoveries) = Storm(c, callers, delay);
                    launch.Add(launchMs);
                    last.Add(lastMs);
                    wake.Add(wakeMs);
                    tokenRequests.Add(requests);
                    discovery.Add(discoveries);
                }
                double coldMedian = Median(cold), lastMedian = Median(last);
                var row = new Row(c.Name, callers, tokenRequests.ToArray(), discovery.ToArray(), coldMedian, Median(launch), lastMedian, Median(wake), lastMedian / coldMedian);
                rows.Add(row);
                Console.WriteLine($"  {c.Name}: token requests per trial [{string.Join(", ", row.TokenRequests)}], discovery GETs [{string.Join(", ", row.DiscoveryRequests)}]");
                Console.WriteLine($"    cold single fetch ms [{Join(cold)}]; stampede last caller ms [{Join(last)}]; launch ms [{Join(launch)}]; last token response → last caller ms [{Join(wake)}]");
            }
            Console.WriteLine();
            Print(rows);
            return rows;
        }

        internal static void Print(List<Row> rows)
        {
            Console.WriteLine("| Contender | Callers | Token requests per trial | Cold fetch, 1 caller (median ms) | All callers started (median ms) | Last caller has token (median ms) | Token response → last caller (median ms) | Ratio last / cold | Bar (Topi) |");
            Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|---|");
            foreach (Row r in rows)
            {
                string requests = r.TokenRequests.Min() == r.TokenRequests.Max() ? r.TokenRequests[0].ToString(CultureInfo.InvariantCulture)
                    : r.TokenRequests.Min() + "–" + r.TokenRequests.Max();
                string bar = r.Name != "Topi" ? "" : (r.TokenRequests.All(n => n == 1) ? "1 request: PASS" : "1 request: MISS") + "; " + (r.Ratio <= 2.0 ? "≤ 2×: PASS" : "≤ 2×: MISS");
                Console.WriteLine($"| {r.Name} | {r.Callers:N0} | {requests} | {r.ColdMs:F2} | {r.LaunchMs:F2} | {r.LastMs:F2} | {r.WakeMs:F2} | {r.Ratio:F2}× | {bar} |");
            }
        }

        private static double Cold(TokenContender c, TimeSpan delay)
        {
            var endpoint = new TokenEndpointHandler(delay);
            c.Create(endpoint);
            Collect();
            var done = new long[1];
            long start = Stopwatch.GetTimestamp();
            c.CallAsync(done, 0).GetAwaiter().GetResult();
            double ms = Stopwatch.GetElapsedTime(start, done[0]).TotalMilliseconds;
            c.Release();
            return ms;
        }

        private static (double LaunchMs, double LastMs, double WakeMs, int TokenRequests, int Discovery) Storm(TokenContender c, int callers, TimeSpan delay)
        {
            var endpoint = new TokenEndpointHandler(delay);
            c.Create(endpoint);
            var done = new long[callers];
            var tasks = new Task[callers];
            Collect();
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < callers; i++) tasks[i] = c.CallAsync(done, i);
            long launched = Stopwatch.GetTimestamp();
            Task.WaitAll(tasks);
            long last = done.Max();
            c.Release();
            return (Stopwatch.GetElapsedTime(start, launched).TotalMilliseconds, Stopwatch.GetElapsedTime(start, last).TotalMilliseconds,
                Stopwatch.GetElapsedTime(endpoint.LastAnsweredAt, last).TotalMilliseconds, endpoint.TokenRequests, endpoint.DiscoveryRequests);
        }

        private static void Collect()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }

        internal static double Median(List<double> values)
        {
            var sorted = values.OrderBy(v => v).ToList();
            int n = sorted.Count;
            return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        }

        private static string Join(List<double> values) => string.Join(", ", values.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)));
    }
}
