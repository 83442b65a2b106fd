using System.Collections.Concurrent;
using System.Net;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D8: the handler starts the token request, then fails before awaiting it (the request body cannot be buffered).
/// When the token request later fails, nobody observes that failure: it must not surface as a
/// <see cref="TaskScheduler.UnobservedTaskException"/>. Runs in the fault table's non-parallel collection, because
/// it watches a process-global event.
/// </summary>
[Collection("FaultTable")]
public sealed class UnobservedExceptionTests
{
    [Fact]
    public async Task PostAsync_BodyBufferingFailsWhileTokenPending_TokenFailureIsNotUnobserved()
    {
        CollectAndFinalize(); // what earlier tests left behind reports now, not during this test
        var unobserved = new ConcurrentQueue<string>();
        EventHandler<UnobservedTaskExceptionEventArgs> onUnobserved = (_, e) =>
        {
            string text = e.Exception.ToString();
            if (text.Contains("Topi", StringComparison.Ordinal)) unobserved.Enqueue(e.Exception.GetType().Name + ": " + e.Exception.InnerException?.GetType().Name);
        };
        TaskScheduler.UnobservedTaskException += onUnobserved;
        try
        {
            await RunScenarioAsync();
            for (int i = 0; i < 3 && unobserved.IsEmpty; i++)
            {
                await Task.Yield();
                CollectAndFinalize();
            }
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= onUnobserved;
        }

        Assert.True(unobserved.IsEmpty, "unobserved task exception(s): " + string.Join("; ", unobserved));
    }

    private static void CollectAndFinalize()
    {
        for (int i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        GC.Collect();
    }

    private static async Task RunScenarioAsync()
    {
        await using var server = FakeTopiServer.Start();
        TaskCompletionSource gate = TokenTestKit.HoldTokenEndpoint(server);
        server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_request\",\"error_description\":\"no\"}", 400));
        TopiOptions options = TestSupport.OptionsFor(server);
        options.MaxTokenAttempts = 1;
        using var client = new TopiClient(options);
        try
        {
            Task<HttpResponseMessage> post = client.HttpClient.PostAsync("v1/shipping-method/method", new RgUnbufferableContent());
            // Let the token endpoint answer once the call has failed (the handler gave up on the body while the token
            // was pending) or once the token request is held at the server (a handler that waits for the token first).
            await TestSupport.EventuallyAsync(() => post.IsCompleted || server.TokenRequestsInFlight == 1, "the call failed or the token request arrived");
            gate.TrySetResult(); // now the token endpoint answers 400
            Exception? sendFailure = await Record.ExceptionAsync(() => post);
            Assert.NotNull(sendFailure); // the body cannot be read and no token comes: the call fails one way or another
        }
        finally
        {
            gate.TrySetResult();
        }

        // Wait for that renewal to end (it fails), by joining it or meeting the pause it left behind.
        await Assert.ThrowsAsync<TopiAuthenticationException>(async () => await client.TokenProvider.GetTokenAsync());
        Assert.Equal(1, server.TokenRequests);
        Assert.Equal(0, server.ApiRequests);
    }
}

/// <summary>Request content that claims 10 bytes and fails with an IOException when serialized or buffered.</summary>
internal sealed class RgUnbufferableContent : HttpContent
{
    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        Task.FromException(new IOException("the request body's source failed"));

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        Task.FromException(new IOException("the request body's source failed"));

    protected override bool TryComputeLength(out long length)
    {
        length = 10;
        return true;
    }
}
