using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Topi.Testing;

/// <summary>
/// The socket side shared by <see cref="FakeHttpHost"/> and <see cref="RawFaultServer"/>: a <see cref="TcpListener"/>
/// on 127.0.0.1 and a free port, an accept loop that serves each connection on a task of its own, and a bounded
/// shutdown. A served socket gets <c>NoDelay</c>; whatever its handler throws is swallowed (the client went away,
/// or the server is shutting down), and the socket is closed when the handler ends.
/// </summary>
internal sealed class LoopbackListener : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly Func<Socket, CancellationToken, Task> _serve;
    private readonly TimeSpan _disposeWait;
    private readonly bool _closeConnectionsFirst;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly ConcurrentDictionary<Socket, byte> _sockets = new();
    private readonly ConcurrentDictionary<Task, byte> _connections = new();
    private readonly object _disposeLock = new();
    private Task _acceptLoop = Task.CompletedTask;
    private Task? _disposeTask;
    private int _accepted;

    private LoopbackListener(TcpListener listener, Func<Socket, CancellationToken, Task> serve, TimeSpan disposeWait, bool closeConnectionsFirst)
    {
        _listener = listener;
        _serve = serve;
        _disposeWait = disposeWait;
        _closeConnectionsFirst = closeConnectionsFirst;
        Port = ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public int Port { get; }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Starts listening and accepting; <paramref name="serve"/> handles each connection.</summary>
    /// <param name="backlog">The listen backlog.</param>
    /// <param name="disposeWait">How long dispose waits for the accept loop, then for the connections' handlers.</param>
    /// <param name="closeConnectionsFirst">
    /// On dispose, close every open connection before waiting for the handlers (for handlers that may never end by
    /// themselves). Otherwise the handlers get <paramref name="disposeWait"/> to finish the exchange they are in, and
    /// only the connections still open after that are closed.
    /// </param>
    /// <param name="serve">Serves one connection; the shutdown token is cancelled when the listener is disposed.</param>
    public static LoopbackListener Start(int backlog, TimeSpan disposeWait, bool closeConnectionsFirst, Func<Socket, CancellationToken, Task> serve)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start(backlog);
        var server = new LoopbackListener(listener, serve, disposeWait, closeConnectionsFirst);
        server._acceptLoop = Task.Run(server.AcceptLoopAsync);
        return server;
    }

    /// <summary>Stops listening, ends every connection and waits (bounded) for the handlers. Idempotent.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_disposeLock)
        {
            return new ValueTask(_disposeTask ??= Task.Run(DisposeCoreAsync));
        }
    }

    /// <summary>Ends the sending side (FIN), then closes the socket; a socket already gone is left alone.</summary>
    public static void CloseGracefully(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception)
        {
            // already gone
        }

        CloseQuietly(socket);
    }

    /// <summary>Closes the socket; a socket already gone is left alone.</summary>
    public static void CloseQuietly(Socket socket)
    {
        try
        {
            socket.Dispose();
        }
        catch (Exception)
        {
            // already gone
        }
    }

    private async Task DisposeCoreAsync()
    {
        try
        {
            _shutdown.Cancel();
        }
        catch (AggregateException)
        {
            // a registration threw; nothing to do
        }

        try
        {
            _listener.Stop();
        }
        catch (Exception)
        {
            // already stopped
        }

        if (_closeConnectionsFirst)
        {
            CloseOpenConnections();
        }

        await Quietly(_acceptLoop.WaitAsync(_disposeWait)).ConfigureAwait(false);
        await Quietly(Task.WhenAll(_connections.Keys.ToArray()).WaitAsync(_disposeWait)).ConfigureAwait(false);
        CloseOpenConnections();
        _shutdown.Dispose();
    }

    private void CloseOpenConnections()
    {
        foreach (var socket in _sockets.Keys)
        {
            CloseQuietly(socket);
        }
    }

    private static Task Quietly(Task task) => task.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private async Task AcceptLoopAsync()
    {
        var ct = _shutdown.Token;
        while (!ct.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(ct).ConfigureAwait(false);
            }
            catch (Exception)
            {
                if (ct.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            Interlocked.Increment(ref _accepted);
            _sockets.TryAdd(socket, 0);
            if (ct.IsCancellationRequested)
            {
                CloseQuietly(socket);
                _sockets.TryRemove(socket, out _);
                return;
            }

            var connection = Task.Run(() => ServeSafelyAsync(socket, ct));
            _connections.TryAdd(connection, 0);
            _ = connection.ContinueWith(
                static (t, state) => ((ConcurrentDictionary<Task, byte>)state!).TryRemove(t, out _),
                _connections,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    private async Task ServeSafelyAsync(Socket socket, CancellationToken ct)
    {
        try
        {
            socket.NoDelay = true;
            await _serve(socket, ct).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // the client went away mid-exchange, or the server is shutting down
        }
        finally
        {
            CloseQuietly(socket);
            _sockets.TryRemove(socket, out _);
        }
    }
}
