package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.netty.shaded.io.netty.buffer.ByteBufAllocator;
import io.grpc.netty.shaded.io.netty.buffer.PooledByteBufAllocator;
import io.grpc.netty.shaded.io.netty.buffer.UnpooledByteBufAllocator;
import java.lang.reflect.Method;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The allocator gRPC's transport actually takes after {@code moe} starts: the property name is the shaded one,
 * and a misspelt name would leave the pool (and its memory after a burst) silently in place.
 */
class BufferAllocatorTest {
    private String before;

    @BeforeEach
    void saveProperty() {
        before = System.getProperty(Moe.GRPC_NETTY_ALLOCATOR);
        System.clearProperty(Moe.GRPC_NETTY_ALLOCATOR);
    }

    @AfterEach
    void restoreProperty() {
        if (before == null) {
            System.clearProperty(Moe.GRPC_NETTY_ALLOCATOR);
        } else {
            System.setProperty(Moe.GRPC_NETTY_ALLOCATOR, before);
        }
    }

    @Test
    void grpcFreesBuffersOnReleaseByDefault() throws Exception {
        Moe.returnBufferMemoryAfterBursts();

        assertThat(System.getProperty(Moe.GRPC_NETTY_ALLOCATOR)).isEqualTo("unpooled");
        assertThat(grpcAllocator()).isInstanceOf(UnpooledByteBufAllocator.class);
    }

    @Test
    void operatorCanKeepThePool() throws Exception {
        System.setProperty(Moe.GRPC_NETTY_ALLOCATOR, "pooled");

        Moe.returnBufferMemoryAfterBursts();

        assertThat(System.getProperty(Moe.GRPC_NETTY_ALLOCATOR)).isEqualTo("pooled");
        assertThat(grpcAllocator()).isInstanceOf(PooledByteBufAllocator.class);
    }

    /** What grpc-netty's servers and channels allocate from (its Utils is package-private, so by reflection). */
    private static ByteBufAllocator grpcAllocator() throws Exception {
        Method m = Class.forName("io.grpc.netty.shaded.io.grpc.netty.Utils")
                .getDeclaredMethod("getByteBufAllocator", boolean.class);
        m.setAccessible(true);
        return (ByteBufAllocator) m.invoke(null, false);
    }
}
