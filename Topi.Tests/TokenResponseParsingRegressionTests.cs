using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// D14: token responses that are valid but unusual. An <c>expires_in</c> too large for a double (1e400) is still a
/// huge lifetime: accepted and capped at 24 h like 1e12, whether it comes as a number or as a numeric string. A UTF-8 byte order mark before the JSON (some servers
/// and proxies write one) is not a reason to reject the token.
/// </summary>
public sealed class TokenResponseParsingRegressionTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    // The number, and the same value as a numeric string (which topi's parser accepts like a number).
    [Theory]
    [InlineData("1e400")]
    [InlineData("\"1e400\"")]
    public async Task ExpiresIn_1e400_AcceptedAndCappedAt24Hours(string expiresInJson)
    {
        var time = new ManualTimeProvider(Start);
        await using FakeTopiServer server = StartServer(time);
        server.ExpiresInJson = expiresInJson;
        using TopiTokenProvider provider = Provider(server, time);

        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal(Start + TimeSpan.FromHours(24), token.ExpiresAt);
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task TokenResponse_Utf8BomBeforeJson_Accepted()
    {
        var time = new ManualTimeProvider(Start);
        await using FakeTopiServer server = StartServer(time);
        string jwt = server.IssueToken();
        // U+FEFF goes out as EF BB BF, the UTF-8 byte order mark.
        server.EnqueueTokenFault(FakeFault.Json("\uFEFF{\"access_token\":\"" + jwt + "\",\"expires_in\":3600,\"scope\":\"client\",\"token_type\":\"Bearer\"}", 200));
        using TopiTokenProvider provider = Provider(server, time);

        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal(jwt, token.AccessToken);
        Assert.Equal(Start + TimeSpan.FromSeconds(3600), token.ExpiresAt);
        Assert.Equal(new[] { "client" }, token.Scopes);
        Assert.Equal(1, server.TokenRequests);
    }

    // Control for the fix above: a lifetime beyond double's range on the negative side is still unusable, not capped.
    [Theory]
    [InlineData("-1e400")]
    [InlineData("\"-1e400\"")]
    [InlineData("-1e308")]
    public async Task ExpiresIn_HugeNegative_Rejected(string expiresInJson)
    {
        var time = new ManualTimeProvider(Start);
        await using FakeTopiServer server = StartServer(time);
        server.ExpiresInJson = expiresInJson;
        using TopiTokenProvider provider = Provider(server, time, o => o.MaxTokenAttempts = 1);

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Contains("expires_in", ex.Message);
    }
}
