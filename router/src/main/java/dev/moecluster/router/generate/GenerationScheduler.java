package dev.moecluster.router.generate;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.ErrorText;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.runner.KvBlockPool;
import dev.moecluster.core.runner.KvCache;
import dev.moecluster.core.runner.SequenceChunk;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenLogprob;
import dev.moecluster.proto.Usage;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.prometheus.metrics.core.metrics.Histogram;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Continuous batching. One loop thread runs decode steps over every active sequence: new requests
 * join between steps when the paged KV pool (bf16 blocks of {@link KvBlockPool#DEFAULT_BLOCK_TOKENS}
 * positions, as many as {@code kvCacheBudgetBytes} holds) has blocks free for their prompt and
 * max_tokens, and finished or cancelled ones hand their blocks back at once. Each step carries one
 * token per decoding sequence plus prompt chunks of sequences still prefilling (at most
 * {@code prefillTokensPerStep} prompt tokens per step, so a long prompt never stalls running
 * decodes), and the MoE dispatch of each layer carries all of them at once. With overlap on, the
 * step is split into two micro-batches run concurrently, so one is at the experts while the other
 * computes attention. The loop runs until {@link #close()}: a router stopping gracefully waits for
 * {@link #requestsInFlight()} to reach zero first.
 */
public final class GenerationScheduler implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(GenerationScheduler.class.getName());
    /** Text prompts longer than this many UTF-8 bytes per token of context are refused before tokenizing. */
    public static final int MAX_PROMPT_BYTES_PER_TOKEN = 16;

    private final DecoderModel model;
    private final TextTokenizer tokenizer;
    private final GenerationConfig config;
    private final String modelName;
    private final int context;
    private final Set<Integer> eos;
    private final BlockingQueue<Sequence> queue;
    private final List<Sequence> active = new ArrayList<>();
    private final ExecutorService microBatches = Executors.newSingleThreadExecutor(
            r -> Thread.ofPlatform().name("moe-generate-microbatch").daemon().unstarted(r));
    private final Thread loop;
    private final KvBlockPool pool;
    private final AtomicLong steps = new AtomicLong();
    private final AtomicLong generatedTokens = new AtomicLong();
    private final AtomicLong promptTokens = new AtomicLong();
    private final AtomicInteger unfinished = new AtomicInteger();
    private final Histogram timeToFirstToken = Histogram.builder()
            .name("moe_router_time_to_first_token_seconds")
            .help("Time from admitting a Generate request to its first generated token")
            .classicOnly()
            .build();
    private final Histogram interTokenLatency = Histogram.builder()
            .name("moe_router_inter_token_latency_seconds")
            .help("Time between consecutive generated tokens of one sequence")
            .classicOnly()
            .classicUpperBounds(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
            .build();
    private volatile int activeCount;
    private volatile boolean running = true;

    /**
     * @param tokenizer the model's tokenizer, or null (then only token-id prompts are accepted)
     * @param context the longest sequence (prompt + generated) the model takes
     * @param eos token ids that end generation
     */
    public GenerationScheduler(DecoderModel model, TextTokenizer tokenizer, GenerationConfig config, String modelName,
            int context, Set<Integer> eos) {
        this.model = requireNonNull(model, "model is null");
        this.tokenizer = tokenizer;
        this.config = requireNonNull(config, "config is null");
        this.modelName = requireNonNull(modelName, "modelName is null");
        this.context = context;
        this.eos = Set.copyOf(eos);
        this.queue = new ArrayBlockingQueue<>(Math.max(1, config.maxQueuedRequests()));
        long bytesPerBlock = KvBlockPool.DEFAULT_BLOCK_TOKENS * model.kvBytesPerToken(DType.BF16);
        long blocks = config.kvCacheBudgetBytes() / bytesPerBlock;
        if (blocks < 1) {
            throw new IllegalArgumentException("a KV-cache budget of " + config.kvCacheBudgetBytes()
                    + " bytes holds no KV block of " + bytesPerBlock + " bytes (" + KvBlockPool.DEFAULT_BLOCK_TOKENS
                    + " tokens)");
        }
        this.pool = model.newBlockPool(DType.BF16, KvBlockPool.DEFAULT_BLOCK_TOKENS, (int) Math.min(Integer.MAX_VALUE, blocks));
        this.loop = Thread.ofPlatform().name("moe-generate").daemon().start(this::run);
    }

    /** Sequences in the running batch. */
    public int activeSequences() {
        return activeCount;
    }

    public int queuedRequests() {
        return queue.size();
    }

    /** Requests accepted and not finished yet (queued or decoding); a cancelled one leaves at the next step. */
    public int requestsInFlight() {
        return unfinished.get();
    }

    /** KV-cache bytes in the blocks reserved by active sequences. */
    public long kvCacheReservedBytes() {
        return pool.reservedBlocks() * pool.bytesPerBlock();
    }

    /** Bytes of the whole KV block pool: the budget rounded down to whole blocks. */
    public long kvCacheCapacityBytes() {
        return pool.totalBlocks() * pool.bytesPerBlock();
    }

    /** The KV blocks sequences are admitted against. */
    public KvBlockPool kvBlockPool() {
        return pool;
    }

    public long steps() {
        return steps.get();
    }

    public long generatedTokens() {
        return generatedTokens.get();
    }

    /** Prompt tokens of the requests admitted so far. */
    public long promptTokens() {
        return promptTokens.get();
    }

    /** Admission to first token, per sequence; unregistered until the router's metrics register it. */
    public Histogram timeToFirstToken() {
        return timeToFirstToken;
    }

    /** Gap between consecutive tokens of a sequence; unregistered until the router's metrics register it. */
    public Histogram interTokenLatency() {
        return interTokenLatency;
    }

    /** Validates and queues a request; errors go to {@code responses} as a status. */
    public void submit(GenerateRequest request, StreamObserver<GenerateResponse> responses) {
        Sequence seq;
        try {
            seq = admit(request, responses);
        } catch (StatusRuntimeException e) {
            responses.onError(e);
            return;
        }
        unfinished.incrementAndGet();
        if (!queue.offer(seq)) {
            unfinished.decrementAndGet();
            responses.onError(Status.RESOURCE_EXHAUSTED.withDescription("the router is busy: " + queue.size()
                    + " requests are already waiting; retry later").asRuntimeException());
            return;
        }
        promptTokens.addAndGet(seq.prompt.length);
        if (responses instanceof ServerCallStreamObserver<GenerateResponse> server) {
            server.setOnCancelHandler(() -> {
                seq.cancelled = true;
                if (queue.remove(seq)) {
                    leave(seq); // still waiting: gone from the queue at once (a decoding one leaves at the next step)
                }
            });
        }
    }

    private Sequence admit(GenerateRequest request, StreamObserver<GenerateResponse> responses) {
        if (!request.getModel().isEmpty() && !request.getModel().equals(modelName)) {
            throw Status.NOT_FOUND.withDescription("model '" + ErrorText.excerpt(request.getModel())
                    + "' is not served here (this router serves '" + modelName + "')").asRuntimeException();
        }
        SamplingParams p = request.getSampling();
        String problem = Sampler.validate(p);
        if (problem != null) {
            throw invalid(problem);
        }
        int[] prompt = switch (request.getPromptCase()) {
            case TEXT -> {
                if (request.getText().isEmpty()) {
                    throw invalid("prompt is empty: send text or token_ids");
                }
                if (tokenizer == null) {
                    throw Status.FAILED_PRECONDITION.withDescription("this model has no tokenizer.json; send token_ids")
                            .asRuntimeException();
                }
                // bounded before tokenizing, whose time and native memory grow with the text
                long bytes = request.getTextBytes().size();
                if (bytes > maxPromptTextBytes()) {
                    throw invalid("prompt text is " + bytes + " bytes; this router takes at most " + maxPromptTextBytes()
                            + " bytes of text (" + MAX_PROMPT_BYTES_PER_TOKEN + " bytes per token of the model's " + context
                            + "-token context)");
                }
                yield tokenizer.encode(request.getText());
            }
            case TOKEN_IDS -> request.getTokenIds().getIdsList().stream().mapToInt(Integer::intValue).toArray();
            case PROMPT_NOT_SET -> throw invalid("prompt is empty: send text or token_ids");
        };
        if (prompt.length == 0) {
            throw invalid("prompt is empty: send text or token_ids");
        }
        int vocab = model.vocabSize();
        for (int id : prompt) {
            if (id < 0 || id >= vocab) {
                throw invalid("token id " + id + " is outside the vocabulary 0.." + (vocab - 1));
            }
        }
        if (prompt.length >= context) {
            throw invalid("prompt has " + prompt.length + " tokens but the model's context is " + context
                    + " tokens (leave room for at least one generated token)");
        }
        int maxTokens = p.hasMaxTokens() ? p.getMaxTokens() : Sampler.DEFAULT_MAX_TOKENS;
        // in 64 bits: max_tokens may be anything up to 2^31-1, and prompt + max_tokens in int wraps negative
        int capacity = (int) Math.min(context, (long) prompt.length + maxTokens);
        int blocks = pool.blocksFor(capacity);
        if (blocks > pool.totalBlocks()) {
            throw Status.RESOURCE_EXHAUSTED.withDescription("prompt + max_tokens need " + capacity + " tokens of KV cache ("
                    + blocks + " blocks, " + blocks * pool.bytesPerBlock() / (1024 * 1024) + " MiB), more than the router's "
                    + "whole pool of " + pool.totalBlocks() + " blocks (" + kvCacheCapacityBytes() / (1024 * 1024) + " MiB)")
                    .asRuntimeException();
        }
        Sequence seq = new Sequence(prompt, maxTokens, capacity, blocks, Sampler.of(p, prompt),
                new TextStream(tokenizer, p.getStopList()), responses, p.getIgnoreEos());
        seq.logprobs = p.getLogprobs() ? p.getTopLogprobs() : -1;
        return seq;
    }

    /** Longest text prompt accepted, in UTF-8 bytes; no tokenizer averages more bytes per token on real text. */
    public long maxPromptTextBytes() {
        return (long) MAX_PROMPT_BYTES_PER_TOKEN * context;
    }

    private static StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
    }

    /** One request being served. */
    private final class Sequence {
        final int[] prompt;
        final int maxTokens;
        final int capacity;
        /** KV blocks reserved for prompt + max_tokens. */
        final int blocks;
        final Sampler sampler;
        final TextStream text;
        final StreamObserver<GenerateResponse> out;
        final boolean ignoreEos;
        /** Alternatives to report with each token's log-probability; -1 for no log-probabilities. */
        int logprobs = -1;
        KvCache cache;
        int prefilled;
        int generated;
        int lastToken;
        volatile boolean cancelled;
        boolean done;
        /** Counted out of {@link #unfinished}. */
        boolean left;
        final long admittedNanos = System.nanoTime();
        long lastTokenNanos;

        Sequence(int[] prompt, int maxTokens, int capacity, int blocks, Sampler sampler, TextStream text,
                StreamObserver<GenerateResponse> out, boolean ignoreEos) {
            this.prompt = prompt;
            this.ignoreEos = ignoreEos;
            this.maxTokens = maxTokens;
            this.capacity = capacity;
            this.blocks = blocks;
            this.sampler = sampler;
            this.text = text;
            this.out = out;
        }

        boolean prefilling() {
            return prefilled < prompt.length;
        }
    }

    private void run() {
        while (running) {
            try {
                admitWaiting();
                if (active.isEmpty()) {
                    Sequence next = queue.poll(100, TimeUnit.MILLISECONDS);
                    if (next != null && !start(next)) {
                        queue.offer(next);
                    }
                    continue;
                }
                step();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (RuntimeException | Error e) {
                LOG.log(Level.SEVERE, "generation loop failed; failing its sequences", e);
                failAll(active, Status.INTERNAL.withDescription("generation failed: " + e).asRuntimeException());
            }
        }
    }

    /** Moves queued requests into the batch while slots and free KV blocks allow (first come, first served). */
    private void admitWaiting() {
        while (active.size() < config.maxActiveSequences()) {
            Sequence next = queue.peek();
            if (next == null || next.blocks > pool.unreservedBlocks()) {
                return;
            }
            queue.poll();
            start(next);
        }
    }

    private boolean start(Sequence s) {
        if (s.cancelled) {
            leave(s);
            return true;
        }
        try {
            s.cache = pool.tryNewCache(s.capacity);
            if (s.cache == null) {
                return false; // blocks free up as running sequences finish
            }
        } catch (RuntimeException | OutOfMemoryError e) {
            // this sequence alone fails; the running batch and the reservations stay as they were
            LOG.log(Level.WARNING, "cannot allocate a KV cache of " + s.capacity + " tokens", e);
            failAll(List.of(s), Status.RESOURCE_EXHAUSTED.withDescription("cannot allocate a KV cache of " + s.capacity
                    + " tokens: " + e.getMessage()).asRuntimeException());
            return true;
        }
        active.add(s);
        activeCount = active.size();
        return true;
    }

    private void step() throws InterruptedException {
        removeFinished();
        if (active.isEmpty()) {
            return;
        }
        List<Sequence> members = new ArrayList<>();
        List<SequenceChunk> chunks = new ArrayList<>();
        int budget = config.prefillTokensPerStep();
        for (Sequence s : active) {
            if (s.prefilling()) {
                if (budget <= 0) {
                    continue;
                }
                int n = Math.min(budget, s.prompt.length - s.prefilled);
                chunks.add(new SequenceChunk(s.cache, Arrays.copyOfRange(s.prompt, s.prefilled, s.prefilled + n)));
                budget -= n;
            } else {
                chunks.add(new SequenceChunk(s.cache, new int[] {s.lastToken}));
            }
            members.add(s);
        }
        FloatMatrix logits;
        try {
            logits = forward(chunks);
        } catch (StatusRuntimeException e) {
            failAll(members, e);
            return;
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "decode step failed", e);
            failAll(members, Status.INTERNAL.withDescription("decode step failed: " + e.getMessage()).asRuntimeException());
            return;
        }
        steps.incrementAndGet();
        int vocab = logits.cols();
        for (int i = 0; i < members.size(); i++) {
            Sequence s = members.get(i);
            if (s.prefilling()) {
                s.prefilled += chunks.get(i).length();
                if (s.prefilling()) {
                    continue;
                }
            }
            if (s.cancelled) {
                continue;
            }
            float[] row = Arrays.copyOfRange(logits.data(), i * vocab, (i + 1) * vocab);
            int token = s.sampler.sample(row);
            emit(s, token, s.logprobs < 0 ? null : Sampler.logprob(row, token, s.logprobs));
        }
        removeFinished();
    }

    /** Runs the step, as two concurrent micro-batches when overlap is on and the step has two sequences. */
    private FloatMatrix forward(List<SequenceChunk> chunks) throws InterruptedException {
        if (!config.overlap() || chunks.size() < 2) {
            return model.forward(chunks);
        }
        int half = chunks.size() / 2;
        List<SequenceChunk> first = chunks.subList(0, half);
        List<SequenceChunk> second = chunks.subList(half, chunks.size());
        CompletableFuture<FloatMatrix> a = CompletableFuture.supplyAsync(() -> model.forward(first), microBatches);
        FloatMatrix b = model.forward(second);
        FloatMatrix fa;
        try {
            fa = a.get();
        } catch (java.util.concurrent.ExecutionException e) {
            throw e.getCause() instanceof RuntimeException re ? re : new IllegalStateException(e.getCause());
        }
        float[] all = new float[fa.data().length + b.data().length];
        System.arraycopy(fa.data(), 0, all, 0, fa.data().length);
        System.arraycopy(b.data(), 0, all, fa.data().length, b.data().length);
        return new FloatMatrix(fa.rows() + b.rows(), fa.cols(), all);
    }

    private void emit(Sequence s, int token, TokenLogprob logprob) {
        s.generated++;
        generatedTokens.incrementAndGet();
        long now = System.nanoTime();
        if (s.generated == 1) {
            timeToFirstToken.observe((now - s.admittedNanos) / 1e9);
        } else {
            interTokenLatency.observe((now - s.lastTokenNanos) / 1e9);
        }
        s.lastTokenNanos = now;
        boolean isEos = !s.ignoreEos && eos.contains(token);
        GenerateResponse.Builder r = GenerateResponse.newBuilder();
        if (!isEos) {
            s.lastToken = token;
            r.addTokenIds(token).setText(s.text.add(token));
            if (logprob != null) {
                r.addLogprobs(logprob);
            }
        }
        FinishReason finish = null;
        if (isEos || s.text.stopped()) {
            finish = FinishReason.FINISH_REASON_STOP;
        } else if (s.generated >= s.maxTokens || s.cache.length() + 1 > s.capacity) {
            finish = FinishReason.FINISH_REASON_LENGTH;
        }
        if (finish != null) {
            r.setText(r.getText() + s.text.finish())
                    .setFinishReason(finish)
                    .setUsage(Usage.newBuilder().setPromptTokens(s.prompt.length).setCompletionTokens(s.generated));
            s.done = true;
        }
        try {
            s.out.onNext(r.build());
            if (s.done) {
                s.out.onCompleted();
            }
        } catch (RuntimeException e) {
            s.cancelled = true; // the call is gone (cancelled or closed): free the sequence
        }
    }

    private void removeFinished() {
        for (Iterator<Sequence> it = active.iterator(); it.hasNext(); ) {
            Sequence s = it.next();
            if (s.done || s.cancelled) {
                it.remove();
                release(s);
                leave(s);
            }
        }
        activeCount = active.size();
    }

    private void leave(Sequence s) {
        if (!s.left) {
            s.left = true;
            unfinished.decrementAndGet();
        }
    }

    private void release(Sequence s) {
        if (s.cache != null) {
            s.cache.release();
            s.cache = null;
        }
    }

    private void failAll(List<Sequence> sequences, StatusRuntimeException e) {
        for (Sequence s : List.copyOf(sequences)) {
            if (!s.done) {
                s.done = true;
                try {
                    s.out.onError(e);
                } catch (RuntimeException ignored) {
                    // already closed
                }
            }
            if (!active.contains(s)) {
                leave(s); // a queued one; active ones leave in removeFinished
            }
        }
        removeFinished();
    }

    @Override
    public void close() {
        running = false;
        loop.interrupt();
        try {
            loop.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        StatusRuntimeException closing = Status.UNAVAILABLE.withDescription("the router is shutting down").asRuntimeException();
        failAll(active, closing);
        List<Sequence> waiting = new ArrayList<>();
        queue.drainTo(waiting);
        failAll(waiting, closing);
        microBatches.shutdownNow();
    }
}
