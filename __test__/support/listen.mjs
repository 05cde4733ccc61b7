// What every local test server does: listen on a free loopback port, and close without
// waiting for clients that keep connections open (pools, keep-alive).

/** Listens on 127.0.0.1, a free port; resolves to the port, rejects if listening fails. */
export async function listenOnLoopback(server, netServer = server) {
    await new Promise((resolve, reject) => {
        netServer.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
            netServer.off('error', reject);
            resolve();
        });
    });
    return netServer.address().port;
}

/** Tracks the connections of `server`, so that its closer can end them. */
export function trackSockets(server) {
    const sockets = new Set();
    server.on('connection', socket => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
    });
    return sockets;
}

/**
 * A `close()` for `server`: stops listening and destroys the open `sockets`; calling it
 * again returns the same promise.
 */
export function closerOf(server, sockets) {
    let closed;
    return () => {
        closed ??= new Promise(resolve => {
            server.close(() => resolve());
            for (const socket of sockets) {
                socket.destroy();
            }
        });
        return closed;
    };
}
