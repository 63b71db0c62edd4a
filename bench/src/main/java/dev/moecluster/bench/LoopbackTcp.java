package dev.moecluster.bench;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The wire's ceiling, measured: one plain TCP stream over loopback, a writer pushing 1 MiB chunks and
 * a reader draining them, as iperf3 does. The data plane's goodput is reported as a fraction of this,
 * measured in the same run on the same machine.
 */
public final class LoopbackTcp {
    private static final int CHUNK = 1 << 20;

    private LoopbackTcp() {}

    /** Bytes per second one stream carried over {@code duration} (after a short warm-up). */
    public static double streamBytesPerSecond(Duration duration) throws IOException, InterruptedException {
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            AtomicLong received = new AtomicLong();
            Thread reader = Thread.ofPlatform().name("tcp-ceiling-reader").start(() -> {
                try (Socket s = server.accept(); InputStream in = s.getInputStream()) {
                    byte[] buf = new byte[CHUNK];
                    int n;
                    while ((n = in.read(buf)) > 0) {
                        received.addAndGet(n);
                    }
                } catch (IOException e) {
                    // the writer closed: done
                }
            });
            try (Socket s = new Socket(InetAddress.getLoopbackAddress(), server.getLocalPort());
                    OutputStream out = s.getOutputStream()) {
                s.setTcpNoDelay(true);
                byte[] chunk = new byte[CHUNK];
                long warmEnd = System.nanoTime() + Duration.ofMillis(300).toNanos();
                while (System.nanoTime() < warmEnd) {
                    out.write(chunk);
                }
                long start = System.nanoTime();
                long before = received.get();
                long end = start + duration.toNanos();
                while (System.nanoTime() < end) {
                    out.write(chunk);
                }
                long bytes = received.get() - before;
                double seconds = (System.nanoTime() - start) / 1e9;
                return bytes / seconds;
            } finally {
                reader.join(5000);
            }
        }
    }
}
