package dev.moecluster.bench;

import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiConsumer;
import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;

/**
 * Drives concurrent Generate streams and measures tokens/s, time to first token and inter-token
 * latency. Works against anything that takes a request and a response observer: a gRPC stub or an
 * in-process scheduler, so both sides of a comparison are measured by the same code.
 */
public final class GenerateLoad {
    /** What to send: {@code streams} requests with {@code concurrency} in flight, greedy, each exactly {@code maxTokens} long. */
    public record Options(int streams, int concurrency, int promptTokens, int maxTokens, int vocab) {}

    /** Results; latencies in microseconds. */
    public record Report(int streams, long tokens, double seconds, long ttftP50, long ttftP99, long itlP50, long itlP99) {
        public double tokensPerSecond() {
            return tokens / seconds;
        }
    }

    private GenerateLoad() {}

    public static GenerateRequest request(Options o, int i) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t = 0; t < o.promptTokens(); t++) {
            ids.addIds((i * 31 + t * 17 + 5) % Math.max(1, o.vocab() - 8));
        }
        return GenerateRequest.newBuilder().setTokenIds(ids)
                .setSampling(SamplingParams.newBuilder().setMaxTokens(o.maxTokens()).setTemperature(0f).setIgnoreEos(true))
                .build();
    }

    public static Report run(Options o, BiConsumer<GenerateRequest, StreamObserver<GenerateResponse>> target)
            throws InterruptedException {
        Histogram ttft = new ConcurrentHistogram(3);
        Histogram itl = new ConcurrentHistogram(3);
        AtomicLong tokens = new AtomicLong();
        AtomicInteger next = new AtomicInteger();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch done = new CountDownLatch(o.streams());
        long start = System.nanoTime();
        List<Runnable> launchers = new ArrayList<>();
        Runnable[] launch = new Runnable[1];
        launch[0] = () -> {
            int i = next.getAndIncrement();
            if (i >= o.streams()) {
                return;
            }
            long sent = System.nanoTime();
            long[] last = {0};
            target.accept(request(o, i), new StreamObserver<>() {
                @Override
                public void onNext(GenerateResponse r) {
                    long now = System.nanoTime();
                    if (r.getTokenIdsCount() > 0) {
                        if (last[0] == 0) {
                            ttft.recordValue((now - sent) / 1000);
                        } else {
                            itl.recordValue((now - last[0]) / 1000);
                        }
                        last[0] = now;
                        tokens.addAndGet(r.getTokenIdsCount());
                    }
                }

                @Override
                public void onError(Throwable t) {
                    failure.compareAndSet(null, t);
                    done.countDown();
                    launch[0].run();
                }

                @Override
                public void onCompleted() {
                    done.countDown();
                    launch[0].run();
                }
            });
        };
        for (int c = 0; c < o.concurrency(); c++) {
            launchers.add(launch[0]);
        }
        launchers.forEach(Runnable::run);
        if (!done.await(30, TimeUnit.MINUTES)) {
            throw new IllegalStateException("generate load did not finish in 30 minutes");
        }
        if (failure.get() != null) {
            throw new IllegalStateException("a stream failed: " + failure.get(), failure.get());
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        return new Report(o.streams(), tokens.get(), seconds, ttft.getValueAtPercentile(50), ttft.getValueAtPercentile(99),
                itl.getValueAtPercentile(50), itl.getValueAtPercentile(99));
    }
}
