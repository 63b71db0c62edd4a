package dev.moecluster.bench.fault;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A TCP forwarder that can add latency on the fly: every chunk it reads is written on the other side
 * {@code delay} later, in order, in both directions, so a round trip costs twice the delay. This
 * kernel has no {@code netem}; a worker advertises the proxy's address so its data plane goes
 * through here while its control plane does not.
 */
public final class DelayProxy implements AutoCloseable {
    private static final byte[] END = new byte[0];

    private record Chunk(long dueNanos, byte[] bytes) {}

    private final ServerSocket server;
    private final InetSocketAddress target;
    private final List<Socket> sockets = new CopyOnWriteArrayList<>();
    private volatile long delayNanos;
    private volatile boolean closed;

    private DelayProxy(ServerSocket server, InetSocketAddress target) {
        this.server = server;
        this.target = target;
    }

    /** Listens on {@code host:port} and forwards every connection to {@code target}. */
    public static DelayProxy start(String host, int port, InetSocketAddress target) throws IOException {
        ServerSocket server = new ServerSocket();
        server.setReuseAddress(true);
        server.bind(new InetSocketAddress(host, port));
        DelayProxy proxy = new DelayProxy(server, target);
        Thread.ofVirtual().name("delay-proxy-" + port).start(proxy::accept);
        return proxy;
    }

    /** Latency added to each direction from now on (a round trip gets twice this). */
    public void setDelay(long millis) {
        delayNanos = TimeUnit.MILLISECONDS.toNanos(millis);
    }

    private void accept() {
        while (!closed) {
            try {
                Socket in = server.accept();
                Socket out = new Socket();
                try {
                    out.connect(target, 5_000);
                } catch (IOException unreachable) {
                    in.close();
                    continue;
                }
                in.setTcpNoDelay(true);
                out.setTcpNoDelay(true);
                sockets.add(in);
                sockets.add(out);
                pipe(in, out);
                pipe(out, in);
            } catch (IOException e) {
                if (!closed) {
                    System.err.println("delay proxy: " + e.getMessage());
                }
            }
        }
    }

    /** Reader and writer of one direction, joined by a queue of chunks with the time each is due. */
    private void pipe(Socket from, Socket to) throws IOException {
        BlockingQueue<Chunk> queue = new LinkedBlockingQueue<>();
        InputStream in = from.getInputStream();
        OutputStream out = to.getOutputStream();
        Thread.ofVirtual().start(() -> {
            byte[] buf = new byte[64 * 1024];
            try {
                for (int n; (n = in.read(buf)) >= 0; ) {
                    queue.add(new Chunk(System.nanoTime() + delayNanos, Arrays.copyOf(buf, n)));
                }
            } catch (IOException broken) {
                // the connection is gone; the writer ends it on the other side too
            }
            queue.add(new Chunk(System.nanoTime() + delayNanos, END));
        });
        Thread.ofVirtual().start(() -> {
            try {
                while (true) {
                    Chunk c = queue.take();
                    long wait = c.dueNanos() - System.nanoTime();
                    if (wait > 0) {
                        TimeUnit.NANOSECONDS.sleep(wait);
                    }
                    if (c.bytes() == END) {
                        break;
                    }
                    out.write(c.bytes());
                }
            } catch (IOException | InterruptedException broken) {
                // fall through to close both ends
            }
            closeQuietly(from);
            closeQuietly(to);
        });
    }

    private void closeQuietly(Socket s) {
        sockets.remove(s);
        try {
            s.close();
        } catch (IOException ignored) {
            // already closed
        }
    }

    @Override
    public void close() throws IOException {
        closed = true;
        server.close();
        for (Socket s : sockets) {
            closeQuietly(s);
        }
    }
}
