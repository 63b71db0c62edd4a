package dev.moecluster.client;

import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.Usage;
import io.grpc.Context;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * The responses of one generation as they arrive, each with the new token ids and their text; the last
 * one carries the finish reason and usage. Reading blocks until the router sends the next tokens, and
 * a failed generation throws its {@link io.grpc.StatusRuntimeException} from {@link #hasNext()} or
 * {@link #next()}. {@link #close()} before the end cancels the generation on the router.
 */
public final class GenerateStream implements Iterator<GenerateResponse>, AutoCloseable {
    private final Iterator<GenerateResponse> responses;
    private final Context.CancellableContext context;

    GenerateStream(Iterator<GenerateResponse> responses, Context.CancellableContext context) {
        this.responses = responses;
        this.context = context;
    }

    @Override
    public boolean hasNext() {
        return responses.hasNext();
    }

    @Override
    public GenerateResponse next() {
        if (!hasNext()) {
            throw new NoSuchElementException("the generation has ended");
        }
        return responses.next();
    }

    /** The rest of the responses as a sequential stream; closing it closes this. */
    public Stream<GenerateResponse> stream() {
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(this, Spliterator.ORDERED | Spliterator.NONNULL), false)
                .onClose(this::close);
    }

    /** Reads the rest of the generation and joins it: every token id, the whole text, how it ended. */
    public Completion readAll() {
        List<Integer> ids = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        GenerateResponse last = null;
        try {
            while (hasNext()) {
                last = responses.next();
                ids.addAll(last.getTokenIdsList());
                text.append(last.getText());
            }
        } finally {
            close();
        }
        return new Completion(List.copyOf(ids), text.toString(),
                last == null ? FinishReason.FINISH_REASON_UNSPECIFIED : last.getFinishReason(),
                last == null ? Usage.getDefaultInstance() : last.getUsage());
    }

    /** Cancels the generation if it is still running; harmless after the end. */
    @Override
    public void close() {
        context.cancel(null);
    }

    /**
     * A whole generation: the generated token ids, their text, why it ended and the token counts.
     *
     * @param tokenIds generated tokens, in order (end-of-sequence tokens excluded, as the router sends them)
     */
    public record Completion(List<Integer> tokenIds, String text, FinishReason finishReason, Usage usage) {}
}
