using System.Text;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// D2: the excerpt of a token endpoint body that is not a JSON token response. The secret must be redacted before
/// the body is cut (a secret straddling the cut must not leak as a prefix), and a 2xx body that is not JSON may
/// hold a token the client cannot recognise (UTF-16, a short opaque token in HTML), so it is never quoted.
/// </summary>
public sealed class ExcerptRedactionTests
{
    // Longer than what is left of the excerpt after 625 padding bytes, with characters that need form-encoding.
    private const string LongSecret = "p@ss:w/rd+ü%&=Tr0ub4dor&3-horse";

    // A JWT-shaped token short enough that its UTF-16 rendering fits in an excerpt.
    private const string Utf16Jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln";

    // 24 characters of opaque token: too short for any "looks like a token" heuristic.
    private const string OpaqueToken = "Qx7vB2nM9kLp4RtW8sZa3YcD";

    private const string Marker = "Sign-in portal of the gateway";

    public static TheoryData<int, string, int, bool> PaddedSecretBodies => new()
    {
        { 400, "spaces", 625, false },
        { 400, "spaces", 628, false },
        { 502, "controls", 625, false },
        { 502, "controls", 630, false },
        { 400, "spaces", 625, true },
    };

    [Theory]
    [MemberData(nameof(PaddedSecretBodies))]
    public async Task TokenError_PaddingThenSecret_MessageHasNoSecretNorPrefix(int status, string padding, int padLength, bool formEncoded)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, clientSecret: LongSecret);
        string echoed = formEncoded ? Uri.EscapeDataString(LongSecret) : LongSecret;
        string pad = padding == "spaces" ? new string(' ', padLength) : ControlPadding(padLength);
        server.EnqueueTokenFault(FakeFault.Status(status, pad + echoed, "text/plain"));
        using TopiTokenProvider provider = Provider(server, time, o => { o.ClientSecret = LongSecret; o.MaxTokenAttempts = 1; });

        List<string> texts = await FailureTextsAsync(provider);

        foreach (string form in new[] { LongSecret, Uri.EscapeDataString(LongSecret), TopiFormEncode(LongSecret) })
            AssertNoPrefix(texts, form, 8);
    }

    [Fact]
    public async Task TokenResponse_200Utf16JsonWithToken_MessageHasNoTokenEvenWithoutSpaces()
    {
        byte[] body = Encoding.Unicode.GetBytes("{\"access_token\":\"" + Utf16Jwt + "\",\"token_type\":\"Bearer\",\"expires_in\":3600}");
        await using var raw = RgRawHttpServer.Start(async exchange =>
        {
            await exchange.SendAsync(RgRawHttpServer.Head(200, "OK", "application/json; charset=utf-16", body.Length));
            await exchange.SendAsync(body);
        });
        var time = new ManualTimeProvider();
        using var provider = new TopiTokenProvider(new TopiOptions
        {
            ClientId = "raw-client",
            ClientSecret = LongSecret,
            Environment = new TopiEnvironment("raw", raw.TokenEndpoint, raw.BaseAddress),
            TimeProvider = time,
            MaxTokenAttempts = 1,
            RetryBaseDelay = TimeSpan.Zero,
        });

        List<string> texts = await FailureTextsAsync(provider);

        Assert.Single(raw.Requests);
        foreach (string text in texts)
        {
            string flat = Flatten(text);
            Assert.False(flat.Contains(Utf16Jwt, StringComparison.Ordinal), "a message shows the UTF-16 token (spaced out)");
            Assert.False(flat.Contains(Utf16Jwt[..16], StringComparison.Ordinal), "a message shows the start of the UTF-16 token (spaced out)");
        }
    }

    [Fact]
    public async Task TokenResponse_200HtmlWithShortOpaqueToken_MessageHasNoToken()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, clientSecret: LongSecret);
        server.EnqueueTokenFault(FakeFault.Status(200, "<html><body><p>Your token: " + OpaqueToken + "</p></body></html>", "text/html"));
        using TopiTokenProvider provider = Provider(server, time, o => { o.ClientSecret = LongSecret; o.MaxTokenAttempts = 1; });

        List<string> texts = await FailureTextsAsync(provider);

        foreach (string text in texts)
        {
            Assert.False(text.Contains(OpaqueToken, StringComparison.Ordinal), "a message shows the opaque token");
            Assert.False(Flatten(text).Contains(OpaqueToken, StringComparison.Ordinal), "a message shows the opaque token (spaced out)");
        }
    }

    [Theory]
    [InlineData(200, "text/html")]
    [InlineData(202, "text/plain")]
    [InlineData(200, "application/json")]
    public async Task TokenResponse_2xxNotJson_BodyIsNeverQuoted(int status, string contentType)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, clientSecret: LongSecret);
        string body = contentType == "application/json"
            ? "<!-- " + Marker + " --> " + OpaqueToken   // labelled JSON, but is not
            : "<html><head><title>" + Marker + "</title></head><body>" + OpaqueToken + "</body></html>";
        server.EnqueueTokenFault(FakeFault.Status(status, body, contentType));
        using TopiTokenProvider provider = Provider(server, time, o => { o.ClientSecret = LongSecret; o.MaxTokenAttempts = 1; });

        List<string> texts = await FailureTextsAsync(provider);

        foreach (string text in texts)
        {
            Assert.False(text.Contains(Marker, StringComparison.Ordinal), "a 2xx body that is not a JSON token response was quoted");
            Assert.False(Flatten(text).Contains(OpaqueToken, StringComparison.Ordinal), "a message shows the opaque token");
        }
    }

    // The first failure and the paused error a second caller gets, with every inner exception.
    private static async Task<List<string>> FailureTextsAsync(TopiTokenProvider provider)
    {
        TopiAuthenticationException first = await FailAsync(provider);
        TopiAuthenticationException paused = await FailAsync(provider);
        var texts = Texts(first).ToList();
        texts.AddRange(Texts(paused));
        return texts;
    }

    private static void AssertNoPrefix(List<string> texts, string secret, int minLength)
    {
        foreach (string text in texts)
        {
            string flat = Flatten(text);
            for (int length = secret.Length; length >= minLength; length--)
            {
                string prefix = secret[..length];
                Assert.False(text.Contains(prefix, StringComparison.Ordinal) || flat.Contains(Flatten(prefix), StringComparison.Ordinal),
                    $"a message contains the first {length} characters of a form of the secret");
            }
        }
    }

    // Every control character, including the C1 range and DEL, repeated to the length.
    private static string ControlPadding(int length)
    {
        var sb = new StringBuilder(length);
        string controls = "\u0001\u0002\t\r\n\u000b\u000c\u001b\u001f\u007f";
        for (int i = 0; i < length; i++) sb.Append(controls[i % controls.Length]);
        return sb.ToString();
    }

    private static string Flatten(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text) if (!char.IsWhiteSpace(c) && !char.IsControl(c)) sb.Append(c);
        return sb.ToString();
    }

    // application/x-www-form-urlencoded, as the client sends the secret inside the Basic credentials.
    private static string TopiFormEncode(string value) => Uri.EscapeDataString(value).Replace("%20", "+", StringComparison.Ordinal);
}
