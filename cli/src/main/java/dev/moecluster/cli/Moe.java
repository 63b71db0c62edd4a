package dev.moecluster.cli;

import dev.moecluster.control.BuildInfo;
import java.util.logging.Level;
import java.util.logging.Logger;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code moe} command: one entry point for every component and tool of moe-cluster. */
@Command(name = "moe",
        mixinStandardHelpOptions = true,
        versionProvider = Moe.Version.class,
        description = "Expert-parallel serving for Mixture-of-Experts models.",
        subcommands = {
            DemoCommand.class,
            LocalCommand.class,
            RouterCommand.class,
            WorkerCommand.class,
            CoordinatorCommand.class,
            AdminCommand.class,
            PlanCommand.class,
            GenerateCommand.class,
            ProbeCommand.class,
            PlacementCommand.class,
            GenModelCommand.class,
            BenchCommand.class,
            CommandLine.HelpCommand.class
        })
public final class Moe {
    /** Held so the levels stick (java.util.logging keeps loggers weakly). */
    private static final Logger[] QUIET = {Logger.getLogger("io.grpc"), Logger.getLogger("com.hazelcast")};
    private static final Logger DJL = Logger.getLogger("ai.djl");
    /** gRPC's allocator choice; shaded, so Netty's own {@code io.netty.allocator.type} does not reach it. */
    static final String GRPC_NETTY_ALLOCATOR = "io.grpc.netty.shaded.io.netty.allocator.type";

    /** {@code moe --version}: the version the build stamped (control's BuildInfo). */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"moe-cluster " + BuildInfo.version()};
        }
    }

    private Moe() {}

    public static void main(String[] args) {
        System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tT %4$s %3$s: %5$s%6$s%n");
        returnBufferMemoryAfterBursts();
        try {
            if (JsonLogFormatter.wanted(System.getenv(JsonLogFormatter.ENV))) {
                for (java.util.logging.Handler h : Logger.getLogger("").getHandlers()) {
                    h.setFormatter(new JsonLogFormatter());
                }
            }
        } catch (IllegalArgumentException e) {
            System.err.println("moe: " + e.getMessage());
            System.exit(2);
        }
        for (Logger l : QUIET) {
            l.setLevel(Level.WARNING);
        }
        DJL.setLevel(Level.SEVERE); // the tokenizer library warns about GPUs and lengths it does not use here
        int code;
        try {
            code = commandLine().execute(args);
        } catch (Throwable fatal) {
            // picocli hands back exceptions as exit codes but lets Errors through; without exiting here
            // the JVM would stay up on the non-daemon threads of what had started (a hung pod, not a crash).
            fatal.printStackTrace();
            code = 70;
        }
        System.exit(code);
    }

    /**
     * Makes gRPC free each network buffer when it is released instead of pooling it, unless the operator
     * chose ({@code -Dio.grpc.netty.shaded.io.netty.allocator.type=pooled}). gRPC's pool kept every 2 MiB
     * chunk that a burst of large calls touched, about 100 MiB for good after issue 11's storm, and Netty's
     * adaptive pool 30-50 MiB; unpooled gives all of it back, for 6-19 % more CPU per routed row on a
     * communication-bound shape (bench/RESULTS.md, "Memory after a storm"). Set here, not in the launch
     * flags, so that JAVA_TOOL_OPTIONS can still override it in the image.
     */
    static void returnBufferMemoryAfterBursts() {
        if (System.getProperty(GRPC_NETTY_ALLOCATOR) == null) {
            System.setProperty(GRPC_NETTY_ALLOCATOR, "unpooled");
        }
    }

    /** The {@code moe} command line; public so tests elsewhere (the Helm chart's) can parse argument lists against it. */
    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(Moe.class);
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            String message = e instanceof io.grpc.StatusRuntimeException s
                    ? describe(s, cmd) : e.getMessage() == null ? e.toString() : e.getMessage();
            cmd.getErr().println("moe " + cmd.getCommandName() + ": " + message);
            if (System.getenv("MOE_DEBUG") != null) {
                e.printStackTrace(cmd.getErr());
            }
            return 1;
        });
        return cl;
    }

    /**
     * A failed call as a user can act on it: the code, the description, what the transport said when that
     * is more ("Connection refused: /127.0.0.1:50051" rather than gRPC's bare "io exception"), and, when the
     * call never got an answer, the address the command dialled and the flag that sets it.
     */
    static String describe(io.grpc.StatusRuntimeException e, CommandLine cmd) {
        io.grpc.Status status = e.getStatus();
        StringBuilder m = new StringBuilder(status.getCode().toString());
        String description = status.getDescription();
        if (description != null) {
            m.append(": ").append(description);
        }
        Throwable root = status.getCause();
        while (root != null && root.getCause() != null) {
            root = root.getCause();
        }
        if (root != null && root.getMessage() != null && (description == null || !description.contains(root.getMessage()))) {
            m.append(": ").append(root.getMessage());
        }
        CommandLine.Model.OptionSpec target = cmd.getCommandSpec().findOption("--target");
        boolean unanswered = status.getCode() == io.grpc.Status.Code.UNAVAILABLE
                || status.getCode() == io.grpc.Status.Code.DEADLINE_EXCEEDED;
        if (unanswered && target != null && target.getValue() != null) {
            m.append(" (calling ").append(target.<Object>getValue()).append(", set by --target)");
        }
        return m.toString();
    }
}
