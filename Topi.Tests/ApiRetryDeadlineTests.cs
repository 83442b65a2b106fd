using System.Diagnostics;
using System.Globalization;
using System.Net;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D5: a 429 whose Retry-After lies beyond what is left of the call's deadline (RequestTimeout). Waiting for it
/// can only end in a timeout, so the caller must get the 429 itself, at once: a TopiApiException with StatusCode
/// 429, after exactly one API request, instead of a "timed out" TopiException when the deadline expires.
/// </summary>
public sealed class ApiRetryDeadlineTests
{
    // (RequestTimeout s, Retry-After s, client on a ManualTimeProvider?) — on the manual clock a retry delay never
    // elapses by itself, so only giving up at once can end the call before the (real-time) deadline.
    public static TheoryData<int, int, bool> Cases => new()
    {
        { 2, 5, false },
        { 8, 10, true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task GetAsync_429RetryAfterBeyondDeadline_ThrowsTopiApiException429AtOnce(int timeoutSeconds, int retryAfterSeconds, bool manualClock)
    {
        await using var server = FakeTopiServer.Start();
        TopiOptions options = TestSupport.OptionsFor(server, manualClock ? new ManualTimeProvider(DateTimeOffset.UtcNow) : null);
        options.RequestTimeout = TimeSpan.FromSeconds(timeoutSeconds);
        using var client = new TopiClient(options);
        await client.TokenProvider.GetTokenAsync(); // warm, so only the API call counts
        server.EnqueueApiFault(FakeFault.Status(429, "\"Too Many Requests\"", "application/json",
            ("Retry-After", retryAfterSeconds.ToString(CultureInfo.InvariantCulture))));
        var clock = Stopwatch.StartNew();

        Exception? ex = await Record.ExceptionAsync(() => client.GetAsync("v1/shipping-method?page=0", HsJsonContext.Default.HsShippingMethodPage));
        TimeSpan elapsed = clock.Elapsed;

        Assert.NotNull(ex);
        var api = Assert.IsType<TopiApiException>(ex);
        Assert.Equal(HttpStatusCode.TooManyRequests, api.StatusCode);
        Assert.True(api.IsTransient);
        Assert.Equal(1, server.ApiRequests);
        Assert.True(elapsed < options.RequestTimeout, $"the 429 came only after {elapsed}, at the deadline");
    }

    // The same, through the raw HttpClient: the 429 response itself comes back, not a cancellation at the deadline.
    [Fact]
    public async Task HttpClientGetAsync_429RetryAfterBeyondDeadline_Returns429Response()
    {
        await using var server = FakeTopiServer.Start();
        TopiOptions options = TestSupport.OptionsFor(server);
        options.RequestTimeout = TimeSpan.FromSeconds(2);
        using var client = new TopiClient(options);
        await client.TokenProvider.GetTokenAsync();
        server.EnqueueApiFault(FakeFault.Status(429, "\"Too Many Requests\"", "application/json", ("Retry-After", "5")));

        using HttpResponseMessage response = await client.HttpClient.GetAsync("v1/shipping-method?page=0");

        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.Equal(1, server.ApiRequests);
    }
}
