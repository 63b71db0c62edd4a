package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class MemorySizeTest {
    @Test
    void binaryUnitsArePowersOf1024() {
        assertThat(MemorySize.parse("80GiB").bytes()).isEqualTo(80L * 1024 * 1024 * 1024); // 85,899,345,920
        assertThat(MemorySize.parse("141GiB").bytes()).isEqualTo(141L << 30);
        assertThat(MemorySize.parse("512MiB").bytes()).isEqualTo(536_870_912L);
        assertThat(MemorySize.parse("64KiB").bytes()).isEqualTo(65_536L);
        assertThat(MemorySize.parse("2TiB").bytes()).isEqualTo(2L << 40);
    }

    @Test
    void decimalUnitsArePowersOf1000() {
        assertThat(MemorySize.parse("80GB").bytes()).isEqualTo(80_000_000_000L);
        assertThat(MemorySize.parse("512MB").bytes()).isEqualTo(512_000_000L);
        assertThat(MemorySize.parse("1TB").bytes()).isEqualTo(1_000_000_000_000L);
        assertThat(MemorySize.parse("4096B").bytes()).isEqualTo(4096L);
    }

    @Test
    void acceptsFractionsSpacesAndAnyCase() {
        assertThat(MemorySize.parse("1.5TiB").bytes()).isEqualTo(3L << 39);
        assertThat(MemorySize.parse(" 80 gib ").bytes()).isEqualTo(80L << 30);
        assertThat(MemorySize.parse("0.5KB").bytes()).isEqualTo(500L);
        assertThat(MemorySize.parse("1.0000000001KB").bytes()).isEqualTo(1000L); // fractions of a byte dropped
    }

    @Test
    void refusesSizesWithoutAnUnambiguousUnit() {
        assertThatThrownBy(() -> MemorySize.parse("80")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("no unit").hasMessageContaining("80GiB").hasMessageContaining("80GB");
        assertThatThrownBy(() -> MemorySize.parse("80G")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("ambiguous").hasMessageContaining("GiB").hasMessageContaining("GB");
        assertThatThrownBy(() -> MemorySize.parse("80XB")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("unknown unit 'XB'");
    }

    @Test
    void refusesMalformedNegativeAndOversizedSizes() {
        assertThatThrownBy(() -> MemorySize.parse("eighty GiB")).hasMessageContaining("cannot read memory size");
        assertThatThrownBy(() -> MemorySize.parse("-1GiB")).hasMessageContaining("cannot read memory size");
        assertThatThrownBy(() -> MemorySize.parse("")).hasMessageContaining("cannot read memory size");
        assertThatThrownBy(() -> MemorySize.parse(null)).hasMessageContaining("cannot read memory size");
        // 10^7 TiB = 1.1e19 bytes > Long.MAX_VALUE (9.2e18)
        assertThatThrownBy(() -> MemorySize.parse("10000000TiB")).hasMessageContaining("too large");
    }

    @Test
    void formatsInTheLargestBinaryUnit() {
        assertThat(MemorySize.format(512)).isEqualTo("512 B");
        assertThat(MemorySize.format(251_658_240L)).isEqualTo("240.0 MiB");
        assertThat(MemorySize.format(72L << 30)).isEqualTo("72.0 GiB");
        assertThat(MemorySize.format(3L << 40)).isEqualTo("3.0 TiB");
        assertThat(MemorySize.formatDecimalGb(80L << 30)).isEqualTo("85.90 GB");
        assertThat(MemorySize.parse("80GiB")).hasToString("80.0 GiB");
    }
}
