using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D6: <see cref="TopiClient.Dispose"/> while a call is in flight. The call ends because the client was disposed:
/// ObjectDisposedException or OperationCanceledException — not a TopiException that claims a timeout and says
/// "try again later" (IsTransient), which would send a caller's retry loop against a dead client.
/// </summary>
public sealed class DisposeTests
{
    [Fact]
    public async Task Dispose_WhileGetAsyncWaitsForToken_CallEndsAsDisposedOrCanceled()
    {
        await using var server = FakeTopiServer.Start();
        TaskCompletionSource gate = TokenTestKit.HoldTokenEndpoint(server);
        var client = new TopiClient(TestSupport.OptionsFor(server));
        try
        {
            Task<HsShippingMethodPage> call = client.GetAsync("v1/shipping-method?page=0", HsJsonContext.Default.HsShippingMethodPage);
            await TestSupport.EventuallyAsync(() => server.TokenRequestsInFlight == 1, "the token request reached the server");

            client.Dispose();
            Exception? ex = await Record.ExceptionAsync(() => call.WaitAsync(TimeSpan.FromSeconds(10)));

            AssertEndedByDisposal(ex);
            Assert.Equal(0, server.ApiRequests);
        }
        finally
        {
            gate.TrySetResult();
            client.Dispose();
        }
    }

    [Fact]
    public Task Dispose_WhileGetAsyncWaitsForApi_CallEndsAsDisposedOrCanceled() =>
        AssertDisposeWhileApiWaitsEndsCallAsync(client => client.GetAsync("v1/shipping-method?page=0", HsJsonContext.Default.HsShippingMethodPage));

    [Fact]
    public Task Dispose_WhileDeleteAsyncWaitsForApi_CallEndsAsDisposedOrCanceled() =>
        AssertDisposeWhileApiWaitsEndsCallAsync(client => client.DeleteAsync("v1/shipping-method/m-1"));

    // Holds the API request at the server, disposes the client, and checks how the call ended.
    private static async Task AssertDisposeWhileApiWaitsEndsCallAsync(Func<TopiClient, Task> startCall)
    {
        await using var server = FakeTopiServer.Start();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var client = new TopiClient(TestSupport.OptionsFor(server));
        try
        {
            await client.TokenProvider.GetTokenAsync();
            server.EnqueueApiFault(FakeFault.Gate(gate.Task));
            Task call = startCall(client);
            await TestSupport.EventuallyAsync(() => server.ApiRequests == 1, "the API request reached the server");

            client.Dispose();
            Exception? ex = await Record.ExceptionAsync(() => call.WaitAsync(TimeSpan.FromSeconds(10)));

            AssertEndedByDisposal(ex);
        }
        finally
        {
            gate.TrySetResult();
            client.Dispose();
        }
    }

    private static void AssertEndedByDisposal(Exception? ex)
    {
        Assert.NotNull(ex);
        Assert.False(ex is TimeoutException, "the call hung after Dispose");
        Assert.False(ex is TopiException, $"Dispose surfaced as {ex!.GetType().Name} (IsTransient={(ex as TopiException)?.IsTransient}): {ex.Message}");
        Assert.True(ex is ObjectDisposedException or OperationCanceledException, "unexpected " + ex.GetType().FullName + ": " + ex.Message);
    }
}
