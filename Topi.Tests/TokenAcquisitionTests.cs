using System.Net;
using System.Text;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>The token request on the wire, credentials, environments, redirects and scope (auth guide, RFC 6749 §2.3.1, §4.4).</summary>
public sealed class TokenAcquisitionTests
{
    [Fact]
    public async Task GetTokenAsync_DefaultOptions_SendsTheGuidesRequestOnTheWire()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        RecordedRequest request = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Token);
        Assert.Equal("POST", request.Method);
        Assert.Equal(FakeTopiServer.TokenPath, request.Path);
        Assert.Equal("Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=", request.Header("Authorization")); // base64("test-client:test-secret")
        Assert.Equal("application/x-www-form-urlencoded", request.Header("Content-Type"));
        Assert.Equal("application/json", request.Header("Accept"));
        Assert.Equal("grant_type=client_credentials&scope=client", request.BodyText);
        Assert.Equal(1, server.TokensIssued);
        Assert.Equal("Bearer", token.TokenType);
        Assert.Equal(3, token.AccessToken.Split('.').Length);
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
    }

    [Fact]
    public async Task GetTokenAsync_IdAndSecretWithReservedAndNonAsciiCharacters_AreFormEncodedBeforeBasicAndAccepted()
    {
        await using FakeTopiServer server = StartServer(clientId: FancyClientId, clientSecret: FancySecret);
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        RecordedRequest request = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Token);
        string expected = "Basic " + Convert.ToBase64String(Encoding.ASCII.GetBytes(FancyClientIdFormEncoded + ":" + FancySecretFormEncoded));
        Assert.Equal(expected, request.Header("Authorization"));
        Assert.Equal(1, server.TokensIssued);
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
    }

    [Fact]
    public async Task GetTokenAsync_WrongSecret_ThrowsInvalidClientFromTheGuidesTrailingCommaBody()
    {
        await using FakeTopiServer server = StartServer(clientSecret: FancySecret);
        using TopiTokenProvider provider = Provider(server, configure: o => o.ClientSecret = "not-the-secret");

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal(HttpStatusCode.Unauthorized, ex.StatusCode);
        Assert.Equal("invalid_client", ex.Error);
        Assert.Equal("Client authentication failed", ex.ErrorDescription);
        Assert.False(ex.IsTransient);
        Assert.Equal(1, server.TokenRequests); // an OAuth error is never retried
        Assert.Equal(0, server.TokensIssued);
    }

    [Fact]
    public async Task GetTokenAsync_WrongClientId_ThrowsInvalidClient()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server, configure: o => o.ClientId = "someone-else");

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal(HttpStatusCode.Unauthorized, ex.StatusCode);
        Assert.Equal("invalid_client", ex.Error);
    }

    [Fact]
    public async Task Token_FromOneEnvironment_IsRejectedByTheOther()
    {
        await using FakeTopiServer sandbox = StartServer(clientId: "sandbox-client", clientSecret: "sandbox-secret", environment: "sandbox");
        await using FakeTopiServer production = StartServer(clientId: "production-client", clientSecret: "production-secret", environment: "production");
        using TopiTokenProvider sandboxProvider = Provider(sandbox);

        TopiToken token = await sandboxProvider.GetTokenAsync();

        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(sandbox, token.AccessToken));
        Assert.Equal(HttpStatusCode.Unauthorized, await ProbeApiAsync(production, token.AccessToken));
        Assert.Equal(0, production.TokenRequests); // the provider only talks to its own environment
        Assert.Equal("sandbox", sandboxProvider.Environment.Name);
    }

    [Fact]
    public async Task GetTokenAsync_CredentialsOfAnotherEnvironment_ThrowsInvalidClient()
    {
        await using FakeTopiServer sandbox = StartServer(clientId: "sandbox-client", clientSecret: "sandbox-secret", environment: "sandbox");
        await using FakeTopiServer production = StartServer(clientId: "production-client", clientSecret: "production-secret", environment: "production");
        using TopiTokenProvider provider = Provider(sandbox, configure: o => o.Environment = TestSupport.EnvironmentFor(production));

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal("invalid_client", ex.Error);
        Assert.Equal(0, sandbox.TokenRequests);
        Assert.Equal(1, production.TokenRequests);
    }

    [Theory]
    [InlineData(301)]
    [InlineData(302)]
    [InlineData(303)]
    [InlineData(307)]
    [InlineData(308)]
    public async Task GetTokenAsync_EndpointRedirects_ThrowsAndNeverContactsTheTarget(int status)
    {
        await using FakeTopiServer server = StartServer();
        await using FakeTopiServer target = StartServer();
        server.EnqueueTokenFault(FakeFault.Status(status, "", "", ("Location", target.TokenEndpoint.AbsoluteUri)));
        using TopiTokenProvider provider = Provider(server);

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal((HttpStatusCode)status, ex.StatusCode);
        Assert.Empty(target.Requests);
        Assert.Equal(1, server.TokenRequests);
    }

    [Theory]
    [InlineData(302)]
    [InlineData(307)]
    public async Task GetTokenAsync_CallerHandlerThatFollowsRedirects_IsRefusedOrNeverContactsTheTarget(int status)
    {
        await using FakeTopiServer server = StartServer();
        await using FakeTopiServer target = StartServer();
        server.EnqueueTokenFault(FakeFault.Status(status, "", "", ("Location", target.TokenEndpoint.AbsoluteUri)));
        using var handler = new SocketsHttpHandler(); // AllowAutoRedirect is true by default

        TopiTokenProvider provider;
        try
        {
            provider = new TopiTokenProvider(TestSupport.OptionsFor(server), handler);
        }
        catch (ArgumentException refused)
        {
            Assert.Equal("handler", refused.ParamName); // refusing such a handler up front is one correct outcome
            return;
        }
        using (provider)
        {
            await FailAsync(provider);
        }

        Assert.Empty(target.Requests); // the other: it never follows the redirect
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task GetTokenAsync_CallerHandlerWithoutRedirects_Works()
    {
        await using FakeTopiServer server = StartServer();
        using var handler = new SocketsHttpHandler { AllowAutoRedirect = false };
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server), handler);

        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
    }

    [Fact]
    public async Task GetTokenAsync_CustomScope_IsSentFormEncoded()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server, configure: o => o.Scope = "client seller:read/all+x");

        TopiAuthenticationException ex = await FailAsync(provider); // the fake grants only "client"

        RecordedRequest request = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Token);
        Assert.Equal("grant_type=client_credentials&scope=client+seller%3Aread%2Fall%2Bx", request.BodyText);
        Assert.Equal("invalid_scope", ex.Error);
        Assert.Equal(HttpStatusCode.BadRequest, ex.StatusCode);
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task GetTokenAsync_CustomScopeTheServerGrants_Succeeds()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server, configure: o => o.Scope = "client client");

        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal("grant_type=client_credentials&scope=client+client", Assert.Single(server.Requests).BodyText);
        Assert.True(token.HasScope("seller-order:read")); // granted scopes come from the response, not the request
    }
}
