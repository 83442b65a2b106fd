using System.Text;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// No exception message, ToString(), inner exception, OAuth error property or TopiToken.ToString() ever contains the client
/// secret (plain, form-encoded or base64, alone or as the Basic credentials) or an access token, whatever the token endpoint answers.
/// </summary>
public sealed class SecretLeakTests
{
    // An opaque access token of 16 characters: no length heuristic can spot it, only knowing it can. It is only ever
    // put into a response that also hands it over as the access_token, so the client knows it.
    private const string ShortOpaqueToken = "Zq8uX2mLr4Tn0pWs";

    public static TheoryData<string> Scenarios => new()
    {
        "wrong-secret", "html-200-echo", "html-502-echo", "oversized", "oauth-echo-401", "oauth-echo-200", "oauth-echo-503-paused",
        "error-code-echo", "token-type-echo", "malformed-json-echo", "timeout", "drop", "redirect",
    };

    // The secret echoed in a form other than verbatim, or a token the length heuristic cannot spot.
    public static TheoryData<string> DisguisedScenarios => new()
    {
        "html-502-echo-form-encoded", "oauth-echo-form-encoded", "oauth-echo-base64", "json-201-short-token", "form-encoded-200",
        "html-502-echo-json-escaped-lowercase-hex-unpadded-base64",
    };

    [Theory]
    [MemberData(nameof(Scenarios))]
    public Task Failure_AnyScenario_NoMessageContainsASecretOrAToken(string scenario) => RunScenarioAsync(scenario);

    [Theory]
    [MemberData(nameof(DisguisedScenarios))]
    public Task Failure_SecretFormEncodedOrBase64OrAShortTokenEchoed_NoMessageContainsIt(string scenario) => RunScenarioAsync(scenario);

    private static async Task RunScenarioAsync(string scenario)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, clientId: FancyClientId, clientSecret: FancySecret);
        string jwt = server.IssueToken();
        string echo = "secret " + FancySecret + " token " + jwt;
        string basic = Convert.ToBase64String(Encoding.UTF8.GetBytes(FancyClientIdFormEncoded + ":" + FancySecretFormEncoded));
        string secretBase64 = Convert.ToBase64String(Encoding.UTF8.GetBytes(FancySecret));
        // The forms some encoders write: JSON with an escaped solidus, percent-encoding with lowercase hex, base64 without padding.
        string jsonEscaped = FancySecret.Replace("/", "\\/"), lowercaseHex = "p%40ss%3aw%2frd%2b%c3%bc%25%26%3d", unpadded = secretBase64.TrimEnd('=');
        string[] forbidden = [FancySecret, FancySecretFormEncoded, Uri.EscapeDataString(FancySecret), secretBase64, basic, jwt, ShortOpaqueToken,
            jsonEscaped, lowercaseHex, unpadded];
        int attempts = 3;
        Action<TopiOptions> configure = o =>
        {
            o.ClientId = FancyClientId;
            o.ClientSecret = FancySecret;
            o.MaxTokenAttempts = attempts;
        };

        switch (scenario)
        {
            case "wrong-secret":
                server.ClientSecret = "the server expects another secret";
                break;
            case "html-200-echo":
                server.EnqueueTokenFault(FakeFault.Status(200, "<html><body>\r\n<p>" + echo + "</p></body></html>", "text/html"));
                break;
            case "html-502-echo":
                attempts = 1;
                server.EnqueueTokenFault(FakeFault.Status(502, "<html>\n" + echo + "\n</html>", "text/html"));
                break;
            case "html-502-echo-form-encoded":
                attempts = 1;
                server.EnqueueTokenFault(FakeFault.Status(502, "<html>\nbad credentials " + FancySecretFormEncoded + " in " + basic + "\n</html>", "text/html"));
                break;
            case "oversized":
                server.EnqueueTokenFault(FakeFault.Oversized(1024 * 1024));
                break;
            case "oauth-echo-401":
                server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"" + echo + "\",}", 401));
                break;
            case "oauth-echo-200":
                server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + ShortOpaqueToken + "\",\"error\":\"invalid_request\",\"error_description\":\"" + echo + " " + ShortOpaqueToken + "\"}", 200));
                break;
            case "oauth-echo-503-paused":
                attempts = 1;
                server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"temporarily_unavailable\",\"error_description\":\"" + echo + "\"}", 503));
                break;
            case "html-502-echo-json-escaped-lowercase-hex-unpadded-base64":
                attempts = 1;
                server.EnqueueTokenFault(FakeFault.Status(502, "<html>\n" + jsonEscaped + " | " + lowercaseHex + " | " + unpadded + "\n</html>", "text/html"));
                break;
            case "oauth-echo-form-encoded":
                server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"client secret " + FancySecretFormEncoded + " rejected\"}", 401));
                break;
            case "oauth-echo-base64":
                server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"Authorization: Basic " + basic + " / " + secretBase64 + "\"}", 401));
                break;
            case "error-code-echo":
                server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"" + FancySecret + "\",\"error_description\":\"" + jwt + "\"}", 400));
                break;
            case "token-type-echo":
                server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + ShortOpaqueToken + "\",\"token_type\":\"" + echo + " " + ShortOpaqueToken + "\",\"expires_in\":60}"));
                break;
            case "form-encoded-200":
                server.EnqueueTokenFault(FakeFault.Status(200, "access_token=" + ShortOpaqueToken + "&token_type=bearer&expires_in=3600", "application/x-www-form-urlencoded"));
                break;
            case "malformed-json-echo":
                server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"" + echo + "\", oops", 401));
                break;
            case "json-201-short-token":
                server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + ShortOpaqueToken + "\",\"token_type\":\"Bearer\",\"expires_in\":60}", 201));
                break;
            case "timeout":
                attempts = 1;
                HoldTokenEndpoint(server);
                break;
            case "drop":
                for (int i = 0; i < 3; i++) server.EnqueueTokenFault(FakeFault.Drop());
                break;
            case "redirect":
                server.EnqueueTokenFault(FakeFault.Status(307, echo, "text/plain", ("Location", server.BaseAddress + "elsewhere?secret=" + Uri.EscapeDataString(FancySecret))));
                break;
        }
        using TopiTokenProvider provider = Provider(server, time, configure);

        var texts = new List<string>();
        Task<TopiToken> call = provider.GetTokenAsync().AsTask();
        if (scenario == "timeout")
        {
            await TestSupport.EventuallyAsync(() => server.TokenRequests == 1, "the request reached the server");
            time.Advance(TimeSpan.FromSeconds(30));
        }
        TopiAuthenticationException ex = await Assert.ThrowsAsync<TopiAuthenticationException>(() => call);
        texts.AddRange(Texts(ex));
        texts.Add(ex.Error ?? "");
        texts.Add(ex.ErrorDescription ?? "");
        // A caller during the outage pause gets a new exception wrapping the last one.
        TopiAuthenticationException paused = await FailAsync(provider);
        Assert.Same(ex, paused.InnerException);
        texts.AddRange(Texts(paused));

        foreach (string text in texts)
            foreach (string secret in forbidden)
                Assert.False(text.Contains(secret, StringComparison.Ordinal), $"[{scenario}] a message contains a secret or token: {Redact(text, forbidden)}");
    }

    [Fact]
    public async Task Success_TokenToStringAndProviderToString_ContainNoSecretOrToken()
    {
        await using FakeTopiServer server = StartServer(clientId: FancyClientId, clientSecret: FancySecret);
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        string[] texts = [token.ToString(), provider.ToString()!, provider.Environment.ToString()];
        foreach (string text in texts)
        {
            Assert.False(text.Contains(token.AccessToken, StringComparison.Ordinal), "a description shows the token");
            Assert.False(text.Contains(FancySecret, StringComparison.Ordinal), "a description shows the secret");
            Assert.False(text.Contains(FancySecretFormEncoded, StringComparison.Ordinal), "a description shows the form-encoded secret");
        }
    }

    // Shows where a secret was found without printing it.
    private static string Redact(string text, string[] forbidden)
    {
        foreach (string secret in forbidden) text = text.Replace(secret, "<<LEAKED #" + Array.IndexOf(forbidden, secret) + ">>", StringComparison.Ordinal);
        return text.Length > 600 ? text[..600] : text;
    }
}
