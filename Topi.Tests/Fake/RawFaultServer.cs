using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Topi.Testing;

/// <summary>Transport-level misbehaviour that <see cref="System.Net.HttpListener"/> cannot produce.</summary>
public enum RawFault
{
    /// <summary>Read the request, then reset the connection (RST) before any byte of a status line.</summary>
    ResetBeforeStatusLine,

    /// <summary>Answer 200 with <c>Content-Length: 100</c>, send 10 bytes of body, close.</summary>
    TruncatedBody,

    /// <summary>Send a status line and one header, then keep the connection open, silent, until disposed.</summary>
    HeadersNeverFinish,

    /// <summary>Send a complete valid token JSON body whose Content-Length claims 50 bytes more, then close.</summary>
    ContentLengthTooLarge,

    /// <summary>Send a valid 200 token response one byte every <see cref="RawFaultServer.TrickleDelay"/>.</summary>
    Trickle,

    /// <summary>Send a correct 200 token response (a control case).</summary>
    ValidToken,
}

/// <summary>
/// A minimal socket server on <c>127.0.0.1:{free port}</c> that answers every connection with one
/// <see cref="RawFault"/>, whatever the request (any path works, e.g. <see cref="TokenEndpoint"/>).
/// Every connection is closed after its one response (<c>Connection: close</c>); clients may retry.
/// Dispose stops everything.
/// </summary>
public sealed class RawFaultServer : IDisposable, IAsyncDisposable
{
    /// <summary>The <c>access_token</c> in the token responses of this server.</summary>
    public const string AccessToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJlbnYiOiJyYXcifQ.cmF3LWZhdWx0LXNlcnZlcg";

    /// <summary>The complete token JSON body of <see cref="RawFault.ValidToken"/>, <see cref="RawFault.Trickle"/> and <see cref="RawFault.ContentLengthTooLarge"/>.</summary>
    public const string TokenJson = "{\"access_token\":\"" + AccessToken + "\",\"expires_in\":7200,\"scope\":\"" + FakeTopiServer.GuideScope + "\",\"token_type\":\"Bearer\"}";

    private const int MaxHeaderBytes = 64 * 1024;
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(5);

    private readonly LoopbackListener _listener;
    private long _trickleDelayTicks = TimeSpan.FromSeconds(1).Ticks;
    private volatile bool _trickleBodyOnly;

    private RawFaultServer(RawFault fault)
    {
        Fault = fault;
        // Some faults keep a connection open until disposal: dispose closes every connection at once.
        _listener = LoopbackListener.Start(backlog: 512, DisposeWait, closeConnectionsFirst: true, HandleAsync);
        BaseAddress = new Uri("http://127.0.0.1:" + _listener.Port.ToString(CultureInfo.InvariantCulture) + "/");
        TokenEndpoint = new Uri(BaseAddress, "oauth2/token");
    }

    /// <summary>The fault every connection gets.</summary>
    public RawFault Fault { get; }

    /// <summary>The server's root, e.g. <c>http://127.0.0.1:5124/</c>.</summary>
    public Uri BaseAddress { get; }

    /// <summary><see cref="BaseAddress"/> + <c>oauth2/token</c> (any path gets the same answer).</summary>
    public Uri TokenEndpoint { get; }

    /// <summary>Connections accepted so far.</summary>
    public int Connections => _listener.Accepted;

    /// <summary>The pause between two bytes of a <see cref="RawFault.Trickle"/> response. Default 1 s.</summary>
    public TimeSpan TrickleDelay
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _trickleDelayTicks));
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            Interlocked.Exchange(ref _trickleDelayTicks, value.Ticks);
        }
    }

    /// <summary>Trickle only the body (the status line and headers go at once). Default false: everything trickles.</summary>
    public bool TrickleBodyOnly
    {
        get => _trickleBodyOnly;
        set => _trickleBodyOnly = value;
    }

    /// <summary>Starts a server on a free loopback port.</summary>
    public static RawFaultServer Start(RawFault fault)
    {
        if (!Enum.IsDefined(fault))
        {
            throw new ArgumentOutOfRangeException(nameof(fault));
        }

        return new RawFaultServer(fault);
    }

    /// <summary>Stops listening, closes every connection and waits (bounded) for the handlers.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync() => _listener.DisposeAsync();

    /// <inheritdoc />
    public override string ToString() => $"RawFaultServer {BaseAddress} ({Fault})";

    private async Task HandleAsync(Socket socket, CancellationToken ct)
    {
        if (!await ReadRequestAsync(socket, ct).ConfigureAwait(false))
        {
            return;
        }

        switch (Fault)
        {
            case RawFault.ResetBeforeStatusLine:
                socket.LingerState = new LingerOption(true, 0);
                socket.Close();
                return;

            case RawFault.TruncatedBody:
                await SendAsync(socket, Head(100) + TokenJson[..10], ct).ConfigureAwait(false);
                LoopbackListener.CloseGracefully(socket);
                return;

            case RawFault.HeadersNeverFinish:
                await SendAsync(socket, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", ct).ConfigureAwait(false);
                await Task.Delay(Timeout.InfiniteTimeSpan, ct).ConfigureAwait(false);
                return;

            case RawFault.ContentLengthTooLarge:
                await SendAsync(socket, Head(Encoding.UTF8.GetByteCount(TokenJson) + 50) + TokenJson, ct).ConfigureAwait(false);
                LoopbackListener.CloseGracefully(socket);
                return;

            case RawFault.Trickle:
            {
                var head = Encoding.ASCII.GetBytes(Head(Encoding.UTF8.GetByteCount(TokenJson)));
                var body = Encoding.UTF8.GetBytes(TokenJson);
                if (TrickleBodyOnly)
                {
                    await socket.SendAsync(head, SocketFlags.None, ct).ConfigureAwait(false);
                }
                else
                {
                    body = [.. head, .. body];
                }

                for (var i = 0; i < body.Length; i++)
                {
                    if (i > 0 || TrickleBodyOnly)
                    {
                        await Task.Delay(TrickleDelay, ct).ConfigureAwait(false);
                    }

                    await socket.SendAsync(body.AsMemory(i, 1), SocketFlags.None, ct).ConfigureAwait(false);
                }

                LoopbackListener.CloseGracefully(socket);
                return;
            }

            default:
                await SendAsync(socket, Head(Encoding.UTF8.GetByteCount(TokenJson)) + TokenJson, ct).ConfigureAwait(false);
                LoopbackListener.CloseGracefully(socket);
                return;
        }
    }

    private static string Head(int contentLength) =>
        "HTTP/1.1 200 OK\r\n" +
        "Content-Type: application/json;charset=UTF-8\r\n" +
        "Cache-Control: no-store\r\n" +
        "Connection: close\r\n" +
        "Content-Length: " + contentLength.ToString(CultureInfo.InvariantCulture) + "\r\n" +
        "\r\n";

    private static async Task SendAsync(Socket socket, string text, CancellationToken ct)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var sent = 0;
        while (sent < bytes.Length)
        {
            sent += await socket.SendAsync(bytes.AsMemory(sent), SocketFlags.None, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Reads the request head and a Content-Length body (so closing later does not turn into a reset).</summary>
    /// <returns>false when the client closed before sending a full request head.</returns>
    private static async Task<bool> ReadRequestAsync(Socket socket, CancellationToken ct)
    {
        var buffer = new byte[8 * 1024];
        using var head = new MemoryStream();
        int headEnd;
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
            if (read == 0)
            {
                return false;
            }

            head.Write(buffer, 0, read);
            headEnd = head.GetBuffer().AsSpan(0, (int)head.Length).IndexOf("\r\n\r\n"u8);
            if (headEnd >= 0)
            {
                break;
            }

            if (head.Length > MaxHeaderBytes)
            {
                return true;
            }
        }

        var headText = Encoding.Latin1.GetString(head.GetBuffer(), 0, headEnd);
        long contentLength = 0;
        foreach (var line in headText.Split("\r\n"))
        {
            var colon = line.IndexOf(':');
            if (colon > 0 && line.AsSpan(0, colon).Trim().Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                _ = long.TryParse(line.AsSpan(colon + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out contentLength);
            }
        }

        var remaining = contentLength - (head.Length - (headEnd + 4));
        while (remaining > 0)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), SocketFlags.None, ct).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            remaining -= read;
        }

        return true;
    }
}
