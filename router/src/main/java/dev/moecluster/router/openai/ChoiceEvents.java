package dev.moecluster.router.openai;

import dev.moecluster.proto.GenerateResponse;
import io.grpc.StatusRuntimeException;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The generation streams of one HTTP request's choices, merged into one queue that the request's own
 * thread drains: the scheduler's loop only enqueues, so a slow or vanished HTTP client never stalls the
 * shared batch. Once the client is gone ({@link #abandon()}), the next token of each choice makes
 * {@code onNext} throw, which the scheduler takes as a cancelled call and frees the sequence.
 */
final class ChoiceEvents {
    /** Something that happened to choice {@code index}: a response, its end, or its failure. */
    record Event(int index, GenerateResponse response, StatusRuntimeException error) {
        boolean ends() {
            return error != null || response.getFinishReasonValue() != 0;
        }
    }

    private final BlockingQueue<Event> queue = new LinkedBlockingQueue<>();
    private volatile boolean abandoned;

    /** The observer to hand the scheduler for choice {@code index}. */
    StreamObserver<GenerateResponse> observer(int index) {
        return new StreamObserver<>() {
            @Override
            public void onNext(GenerateResponse value) {
                if (abandoned) {
                    throw Status.CANCELLED.withDescription("the HTTP client went away").asRuntimeException();
                }
                queue.add(new Event(index, value, null));
            }

            @Override
            public void onError(Throwable t) {
                queue.add(new Event(index, null, t instanceof StatusRuntimeException e ? e
                        : Status.INTERNAL.withDescription(String.valueOf(t)).withCause(t).asRuntimeException()));
            }

            @Override
            public void onCompleted() {
                // the last response carries the finish reason; nothing more to pass on
            }
        };
    }

    /** The next event, waiting for it. */
    Event take() throws InterruptedException {
        return queue.take();
    }

    /** The next event if one is already there (admission refusals arrive during {@code submit}). */
    Event poll() {
        return queue.poll();
    }

    Event poll(long timeout, TimeUnit unit) throws InterruptedException {
        return queue.poll(timeout, unit);
    }

    /** The client is gone or the request failed: every choice still generating stops at its next token. */
    void abandon() {
        abandoned = true;
    }
}
