using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Topi.Testing;

namespace Topi.Tests;

/// <summary>
/// A tiny HTTP/1.1 server on <c>127.0.0.1:{free port}</c> for the regression tests that need exact bytes on the wire
/// (a body in UTF-16, a Content-Length the body never reaches, a reset right after the headers). Every connection
/// carries one request: the server reads the request head and its Content-Length body, records it, and hands the
/// connection to the test's script, which writes whatever bytes it wants and then either resets or closes.
/// The socket plumbing (accept loop, bounded shutdown) is <see cref="LoopbackListener"/>'s.
/// Prefixed "Rg" (regression) so it never clashes with other files' helpers.
/// </summary>
internal sealed class RgRawHttpServer : IAsyncDisposable
{
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(5);

    private readonly LoopbackListener _listener;
    private readonly Func<RgRawExchange, Task> _script;
    private readonly ConcurrentQueue<RgRawRequest> _requests = new();

    private RgRawHttpServer(Func<RgRawExchange, Task> script)
    {
        _script = script;
        _listener = LoopbackListener.Start(backlog: 128, DisposeWait, closeConnectionsFirst: true, HandleAsync);
        BaseAddress = new Uri("http://127.0.0.1:" + _listener.Port.ToString(CultureInfo.InvariantCulture) + "/");
    }

    /// <summary>The server's root, such as <c>http://127.0.0.1:5124/</c>.</summary>
    public Uri BaseAddress { get; }

    /// <summary><see cref="BaseAddress"/> + <c>oauth2/token</c> (every path gets the script's answer).</summary>
    public Uri TokenEndpoint => new(BaseAddress, "oauth2/token");

    /// <summary>Every request received so far, in order.</summary>
    public IReadOnlyList<RgRawRequest> Requests => _requests.ToArray();

    /// <summary>Starts a server that answers each request with <paramref name="script"/>.</summary>
    public static RgRawHttpServer Start(Func<RgRawExchange, Task> script) => new(script);

    /// <summary>The head of an HTTP/1.1 response with <c>Connection: close</c>; <paramref name="contentLength"/> may lie.</summary>
    public static byte[] Head(int status, string reason, string contentType, long contentLength, params (string Name, string Value)[] headers)
    {
        var sb = new StringBuilder();
        sb.Append("HTTP/1.1 ").Append(status.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(reason).Append("\r\n");
        sb.Append("Content-Type: ").Append(contentType).Append("\r\n");
        sb.Append("Content-Length: ").Append(contentLength.ToString(CultureInfo.InvariantCulture)).Append("\r\n");
        foreach (var (name, value) in headers) sb.Append(name).Append(": ").Append(value).Append("\r\n");
        sb.Append("Connection: close\r\n\r\n");
        return Encoding.ASCII.GetBytes(sb.ToString());
    }

    public ValueTask DisposeAsync() => _listener.DisposeAsync();

    // LoopbackListener swallows what this throws (the client went away, or the server is shutting down) and closes the socket.
    private async Task HandleAsync(Socket socket, CancellationToken ct)
    {
        RgRawRequest? request = await ReadRequestAsync(socket, ct);
        if (request is null) return;
        _requests.Enqueue(request);
        var exchange = new RgRawExchange(socket, request, ct);
        await _script(exchange);
        if (!exchange.Ended) exchange.Close();
    }

    private static async Task<RgRawRequest?> ReadRequestAsync(Socket socket, CancellationToken ct)
    {
        var buffer = new byte[8192];
        using var head = new MemoryStream();
        int end;
        while (true)
        {
            int read = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (read == 0) return null;
            head.Write(buffer, 0, read);
            end = head.GetBuffer().AsSpan(0, (int)head.Length).IndexOf("\r\n\r\n"u8);
            if (end >= 0) break;
            if (head.Length > 64 * 1024) return null;
        }

        string[] lines = Encoding.Latin1.GetString(head.GetBuffer(), 0, end).Split("\r\n");
        string[] start = lines[0].Split(' ');
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':');
            if (colon <= 0) continue;
            string name = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
            headers[name] = headers.TryGetValue(name, out string? earlier) ? earlier + "," + value : value;
        }

        // Read the request body too, so that closing the connection later is a FIN, not a reset.
        long length = headers.TryGetValue("Content-Length", out string? cl) && long.TryParse(cl, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n : 0;
        long remaining = length - (head.Length - (end + 4));
        while (remaining > 0)
        {
            int read = await socket.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), SocketFlags.None, ct);
            if (read == 0) break;
            remaining -= read;
        }

        return new RgRawRequest(start[0], start.Length > 1 ? start[1] : "", headers);
    }
}

/// <summary>A request as <see cref="RgRawHttpServer"/> received it (head only).</summary>
internal sealed record RgRawRequest(string Method, string Target, IReadOnlyDictionary<string, string> Headers)
{
    public string? Header(string name) => Headers.TryGetValue(name, out string? value) ? value : null;
}

/// <summary>One connection of <see cref="RgRawHttpServer"/>: write exact bytes, then reset or close.</summary>
internal sealed class RgRawExchange
{
    private readonly Socket _socket;
    private readonly CancellationToken _ct;

    internal RgRawExchange(Socket socket, RgRawRequest request, CancellationToken ct)
    {
        _socket = socket;
        Request = request;
        _ct = ct;
    }

    public RgRawRequest Request { get; }

    internal bool Ended { get; private set; }

    public async Task SendAsync(byte[] bytes)
    {
        int sent = 0;
        while (sent < bytes.Length) sent += await _socket.SendAsync(bytes.AsMemory(sent), SocketFlags.None, _ct);
    }

    /// <summary>Ends the connection with a TCP reset (SO_LINGER 0).</summary>
    public void Reset()
    {
        Ended = true;
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    /// <summary>Ends the connection gracefully (FIN).</summary>
    public void Close()
    {
        Ended = true;
        LoopbackListener.CloseGracefully(_socket);
    }
}
