using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// D15b: the token endpoint's error that echoes the token the provider held before (invalidated after a 401, or
/// replaced by the last renewal) does not show it either.
/// </summary>
public sealed class TokenErrorRedactionTests
{
    private const string FirstToken = "first-opaque-tok", SecondToken = "second-opaque-tok";

    [Theory]
    [InlineData("invalidated")]
    [InlineData("replaced")]
    public async Task TokenError_EchoesAnEarlierToken_NotInMessageOrProperties(string how)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + FirstToken + "\",\"token_type\":\"Bearer\",\"expires_in\":3600}"));
        using TopiTokenProvider provider = Provider(server, time, o => o.MaxTokenAttempts = 1);
        TopiToken first = await provider.GetTokenAsync();
        if (how == "replaced")
        {
            server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + SecondToken + "\",\"token_type\":\"Bearer\",\"expires_in\":3600}"));
            provider.Invalidate(first);
            await provider.GetTokenAsync();
            provider.Invalidate(await provider.GetTokenAsync());
        }
        else
        {
            provider.Invalidate(first);
        }
        string echo = how == "replaced" ? "tokens " + FirstToken + " and " + SecondToken + " are not accepted here" : "token " + FirstToken + " is not accepted here";
        server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_request\",\"error_description\":\"" + echo + "\"}", 400));

        TopiAuthenticationException ex = await FailAsync(provider);

        var texts = new List<string>(Texts(ex)) { ex.Error ?? "", ex.ErrorDescription ?? "" };
        foreach (string text in texts)
        {
            Assert.False(text.Contains(FirstToken, StringComparison.Ordinal), $"[{how}] the first token is shown");
            Assert.False(text.Contains(SecondToken, StringComparison.Ordinal), $"[{how}] the second token is shown");
        }
        Assert.Contains("[redacted]", ex.Message);
    }
}
