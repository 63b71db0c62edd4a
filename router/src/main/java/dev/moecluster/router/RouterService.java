package dev.moecluster.router;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.GetModelInfoRequest;
import dev.moecluster.proto.ModelInfo;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.router.generate.GenerationScheduler;
import dev.moecluster.control.ErrorText;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The public {@code moe.v1.Router} API. Validates every request before it touches shared state and
 * maps each failure to a status a client can act on. MoeForward is admitted by the tokens in flight
 * across calls, counted from the request's shape before its data is decoded. Once
 * {@link #stopAccepting()} was called, new {@code MoeForward} and {@code Generate} calls get
 * UNAVAILABLE while those already taken go on.
 */
final class RouterService extends RouterGrpc.RouterImplBase {
    private static final Logger LOG = Logger.getLogger(RouterService.class.getName());

    private final ModelConfig config;
    private final RemoteMoeBlock moe;
    private final int maxTokens;
    private final long maxTokensInFlight;
    private final GenerationScheduler scheduler;
    private final AtomicInteger inHandler = new AtomicInteger();
    private final AtomicLong tokensInFlight = new AtomicLong();
    private volatile boolean stopping;

    RouterService(ModelConfig config, RemoteMoeBlock moe, int maxTokens, int maxTokensInFlight, GenerationScheduler scheduler) {
        this.config = config;
        this.moe = moe;
        this.maxTokens = maxTokens;
        this.maxTokensInFlight = maxTokensInFlight;
        this.scheduler = scheduler;
    }

    /** New MoeForward and Generate calls get UNAVAILABLE from now on. */
    void stopAccepting() {
        stopping = true;
    }

    /**
     * MoeForward calls being answered and Generate calls being handed to the scheduler; with the
     * scheduler's requests in flight, what a graceful stop waits for.
     */
    int callsInHandler() {
        return inHandler.get();
    }

    /**
     * Counts the call in, or refuses it once stopping. Counting before the check means a stop that
     * sees zero calls after {@link #stopAccepting()} has missed none.
     */
    private boolean enter(StreamObserver<?> responses) {
        inHandler.incrementAndGet();
        if (stopping) {
            inHandler.decrementAndGet();
            responses.onError(Status.UNAVAILABLE.withDescription("router is shutting down; retry on another router")
                    .asRuntimeException());
            return false;
        }
        return true;
    }

    @Override
    public void generate(GenerateRequest request, StreamObserver<GenerateResponse> responses) {
        if (!enter(responses)) {
            return;
        }
        try {
            scheduler.submit(request, responses);
        } finally {
            inHandler.decrementAndGet();
        }
    }

    @Override
    public void getModelInfo(GetModelInfoRequest request, StreamObserver<ModelInfo> responses) {
        responses.onNext(ModelInfo.newBuilder()
                .setName(config.name())
                .setArchitecture(config.architecture().hfName())
                .setHiddenSize(config.hiddenSize())
                .setNumLayers(config.numLayers())
                .setNumExperts(config.numExperts())
                .setExpertsPerToken(config.expertsPerToken())
                .addAllMoeLayers(config.moeLayerList())
                .setDtype(WireTensors.proto(config.dtype()))
                .build());
        responses.onCompleted();
    }

    @Override
    public void moeForward(MoeForwardRequest request, StreamObserver<MoeForwardResponse> responses) {
        if (!enter(responses)) {
            return;
        }
        long admitted = 0;
        try {
            long tokens = validateShape(request);
            admit(tokens);
            admitted = tokens;
            FloatMatrix x = validate(request);
            if (Context.current().isCancelled()) {
                // the client is gone: nothing to compute for (and whatever would be sent goes nowhere)
                responses.onError(Status.CANCELLED.withDescription("the call was cancelled before dispatch").asRuntimeException());
                return;
            }
            RemoteMoeBlock.Result result = moe.route(request.getLayer(), x);
            int bad = result.output().firstNonFinite();
            if (bad >= 0) {
                throw Status.INTERNAL.withDescription("MoeForward produced a non-finite value (NaN or infinity) at token "
                        + bad / result.output().cols() + ", column " + bad % result.output().cols()
                        + " from finite hidden_states (values too large for the model's weights?)").asRuntimeException();
            }
            DType dtype = WireTensors.dtype(request.getHiddenStates().getDtype());
            responses.onNext(MoeForwardResponse.newBuilder()
                    .setOutput(WireTensors.encode(result.output(), dtype))
                    .addAllSelectedExperts(java.util.Arrays.stream(result.gate().experts()).boxed().toList())
                    .build());
            responses.onCompleted();
        } catch (StatusRuntimeException e) {
            responses.onError(e);
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "MoeForward failed", e);
            responses.onError(Status.INTERNAL.withDescription("MoeForward failed: " + e).asRuntimeException());
        } finally {
            tokensInFlight.addAndGet(-admitted);
            inHandler.decrementAndGet();
        }
    }

    /**
     * Admits {@code tokens} more MoeForward tokens, or refuses at once: a storm of large calls must not
     * pile up decoded activations until the router runs out of memory.
     */
    private void admit(long tokens) {
        long now = tokensInFlight.addAndGet(tokens);
        if (now > maxTokensInFlight) {
            tokensInFlight.addAndGet(-tokens);
            throw Status.RESOURCE_EXHAUSTED.withDescription("the router is busy: " + (now - tokens) + " MoeForward tokens in flight, "
                    + tokens + " more would pass its limit of " + maxTokensInFlight + " (--max-inflight-tokens); retry later")
                    .asRuntimeException();
        }
    }

    /**
     * The checks the request's shape alone answers, made before its data is decoded; returns its tokens.
     * A shape that is not {@code [tokens, hidden]} is left for the decoder to name.
     */
    private long validateShape(MoeForwardRequest request) {
        if (!request.getModel().isEmpty() && !request.getModel().equals(config.name())) {
            throw Status.NOT_FOUND.withDescription("model '" + ErrorText.excerpt(request.getModel())
                    + "' is not served here (this router serves '" + config.name() + "')").asRuntimeException();
        }
        java.util.List<Long> shape = request.getHiddenStates().getShapeList();
        if (shape.size() != 2) {
            return 0;
        }
        long tokens = shape.get(0);
        if (shape.get(1) != config.hiddenSize()) {
            throw invalid("hidden_states has width " + shape.get(1) + " but the model's hidden_size is " + config.hiddenSize());
        }
        if (tokens == 0) {
            throw invalid("hidden_states is empty: send at least one token");
        }
        if (tokens < 0) {
            throw invalid("hidden_states has a negative token count " + tokens);
        }
        if (tokens > maxTokens) {
            throw Status.RESOURCE_EXHAUSTED.withDescription("hidden_states has " + tokens
                    + " tokens; this router accepts at most " + maxTokens + " per call").asRuntimeException();
        }
        return tokens;
    }

    private FloatMatrix validate(MoeForwardRequest request) {
        int layer = request.getLayer();
        if (layer < 0 || layer >= config.numLayers()) {
            throw invalid("layer " + layer + " is out of range: the model has " + config.numLayers() + " layers (0.."
                    + (config.numLayers() - 1) + ")");
        }
        if (!config.isMoeLayer(layer)) {
            throw invalid("layer " + layer + " is a dense layer, not a MoE layer (MoE layers: " + config.moeLayerList() + ")");
        }
        if (!request.hasHiddenStates()) {
            throw invalid("hidden_states is missing");
        }
        dev.moecluster.proto.DType dt = request.getHiddenStates().getDtype();
        if (dt == dev.moecluster.proto.DType.FP8_E4M3) {
            throw invalid("hidden_states must be F32, BF16 or F16");
        }
        FloatMatrix x;
        try {
            x = WireTensors.decode(request.getHiddenStates(), "hidden_states");
        } catch (IllegalArgumentException e) {
            throw invalid(e.getMessage());
        }
        int bad = x.firstNonFinite();
        if (bad >= 0) {
            throw invalid("hidden_states has a non-finite value (NaN or infinity) at token " + bad / x.cols()
                    + ", column " + bad % x.cols());
        }
        return x;
    }

    private static StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
    }
}
