package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class NetworksTest {

  @Test
  void nothingIsNoLimit() {
    assertTrue(Networks.parse(null).isEmpty());
    assertTrue(Networks.parse("").isEmpty());
    assertTrue(Networks.parse(" \t\n ").isEmpty());
    assertTrue(Networks.parse(" , ,,").isEmpty());
  }

  @Test
  void anIpv4RangeHoldsItsAddresses() {
    Networks networks = Networks.parse("203.0.113.0/24");

    assertTrue(networks.contains("203.0.113.0"));
    assertTrue(networks.contains("203.0.113.77"));
    assertTrue(networks.contains("203.0.113.255"));
    assertFalse(networks.contains("203.0.112.255"));
    assertFalse(networks.contains("203.0.114.0"));
    assertFalse(networks.contains("198.51.100.7"));
  }

  @Test
  void aPrefixNeedNotEndOnAByte() {
    Networks networks = Networks.parse("10.1.2.128/25, 172.16.0.0/12");

    assertTrue(networks.contains("10.1.2.128"));
    assertTrue(networks.contains("10.1.2.255"));
    assertFalse(networks.contains("10.1.2.127"));
    assertTrue(networks.contains("172.31.255.255"));
    assertFalse(networks.contains("172.32.0.0"));
    assertFalse(networks.contains("172.15.255.255"));
  }

  @Test
  void aBareIpv4AddressIsOneAddress() {
    Networks networks = Networks.parse("198.51.100.7");

    assertTrue(networks.contains("198.51.100.7"));
    assertFalse(networks.contains("198.51.100.6"));
    assertFalse(networks.contains("198.51.100.8"));
    assertTrue(Networks.parse("198.51.100.7/32").contains("198.51.100.7"));
    assertFalse(Networks.parse("198.51.100.7/32").contains("198.51.100.70"));
  }

  @Test
  void slashZeroHoldsEveryAddressOfItsFamily() {
    assertTrue(Networks.parse("0.0.0.0/0").contains("198.51.100.7"));
    assertTrue(Networks.parse("0.0.0.0/0").contains("255.255.255.255"));
    assertFalse(Networks.parse("0.0.0.0/0").contains("2001:db8::1"));
    assertTrue(Networks.parse("::/0").contains("2001:db8::1"));
    assertFalse(Networks.parse("::/0").contains("198.51.100.7"));
  }

  @Test
  void hostBitsInARangeAreIgnored() {
    assertTrue(Networks.parse("10.9.8.7/8").contains("10.200.0.1"));
    assertTrue(Networks.parse("2001:db8::1/32").contains("2001:db8:ffff::2"));
  }

  @Test
  void anIpv6RangeHoldsItsAddresses() {
    Networks networks = Networks.parse("2001:db8::/32");

    assertTrue(networks.contains("2001:db8::1"));
    assertTrue(networks.contains("2001:0db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assertTrue(networks.contains("2001:DB8:0:0:0:0:0:0"));
    assertFalse(networks.contains("2001:db9::"));
    assertFalse(networks.contains("2001:db7:ffff::"));
    assertFalse(networks.contains("::1"));
  }

  @Test
  void aBareIpv6AddressIsOneAddress() {
    Networks networks = Networks.parse("2001:db8::42");

    assertTrue(networks.contains("2001:db8::42"));
    assertTrue(networks.contains("2001:db8:0:0:0:0:0:42"));
    assertFalse(networks.contains("2001:db8::43"));
    assertTrue(Networks.parse("::1/128").contains("0:0:0:0:0:0:0:1"));
    assertFalse(Networks.parse("::1/128").contains("::2"));
  }

  @Test
  void anIpv6PrefixNeedNotEndOnAByte() {
    Networks networks = Networks.parse("2001:db8:abcd:12::/63");

    assertTrue(networks.contains("2001:db8:abcd:12::1"));
    assertTrue(networks.contains("2001:db8:abcd:13:ffff::"));
    assertFalse(networks.contains("2001:db8:abcd:14::"));
    assertFalse(networks.contains("2001:db8:abcd:11::"));
  }

  @Test
  void anIpv4MappedCallerMatchesIpv4Ranges() {
    Networks networks = Networks.parse("203.0.113.0/24");

    assertTrue(networks.contains("::ffff:203.0.113.5"));
    assertTrue(networks.contains("::FFFF:cb00:7105")); // the same address in hex
    assertTrue(networks.contains("0:0:0:0:0:ffff:203.0.113.5"));
    assertFalse(networks.contains("::ffff:203.0.114.5"));
    assertFalse(networks.contains("::203.0.113.5")); // IPv4-compatible, not mapped: IPv6
  }

  @Test
  void anIpv4MappedRangeIsAnIpv4Range() {
    Networks networks = Networks.parse("::ffff:203.0.113.0/120");

    assertTrue(networks.contains("203.0.113.9"));
    assertTrue(networks.contains("::ffff:203.0.113.9"));
    assertFalse(networks.contains("203.0.112.9"));
    assertTrue(Networks.parse("::ffff:198.51.100.7").contains("198.51.100.7"));
    assertFalse(Networks.parse("::ffff:0:0/95").contains("198.51.100.7"));
  }

  @Test
  void rangesAreSeparatedByCommasOrWhitespace() {
    Networks networks =
        Networks.parse("  203.0.113.0/24,198.51.100.7 ,\t2001:db8::/32\n192.0.2.0/28,, ");

    assertEquals(4, networks.size());
    assertTrue(networks.contains("203.0.113.200"));
    assertTrue(networks.contains("198.51.100.7"));
    assertTrue(networks.contains("2001:db8::99"));
    assertTrue(networks.contains("192.0.2.15"));
    assertFalse(networks.contains("192.0.2.16"));
  }

  @Test
  void atMost64Ranges() {
    String sixtyFour =
        IntStream.range(0, 64)
            .mapToObj(i -> "10.0." + i + ".0/24")
            .collect(Collectors.joining(","));

    assertEquals(64, Networks.parse(sixtyFour).size());
    assertTrue(Networks.parse(sixtyFour).contains("10.0.63.1"));
    assertThrows(IllegalArgumentException.class, () -> Networks.parse(sixtyFour + ",192.0.2.1"));
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "localhost",
        "example.com",
        "example.com/24",
        "10.0.0.0/33",
        "2001:db8::/129",
        "10.0.0.0/",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/8/8",
        "10.0.0.0/ 8",
        "10.0.0.0/0x8",
        "10.0.0.0/255.0.0.0",
        "10.0.0",
        "10.0.0.0.0",
        "256.0.0.0",
        "10.0.0.-1",
        "010.0.0.1",
        "1.2.3.04",
        "10..0.1",
        "0x0a.0.0.1",
        "2130706433",
        "2001:db8::g",
        "::ffff:1.2.3.010",
        "::ffff:1.2.3",
        "::ffff:1.2.3.4.",
        "2001:db8:::1",
        "1:2:3:4:5:6:7:8:9",
        "fe80::1%eth0",
        "[2001:db8::1]",
        ".:",
        ":",
        "/24",
        "10.0.0.0;10.0.1.0",
        "203.0.113.0/24,garbage"
      })
  void anythingElseIsUnreadable(String text) {
    assertThrows(IllegalArgumentException.class, () -> Networks.parse(text));
  }

  @Test
  void aCallerThatIsNotAnAddressIsInNoRange() {
    Networks everything = Networks.parse("0.0.0.0/0 ::/0");

    assertFalse(everything.contains(null));
    assertFalse(everything.contains(""));
    assertFalse(everything.contains("localhost"));
    assertFalse(everything.contains("unknown"));
    assertFalse(everything.contains("010.0.0.1"));
    assertFalse(everything.contains("2001:db8::g"));
  }

  @Test
  void aCallersAddressMayComeInBracketsOrWithAZone() {
    Networks networks = Networks.parse("2001:db8::/32, fe80::/10, 203.0.113.0/24");

    assertTrue(networks.contains("[2001:db8::1]"));
    assertTrue(networks.contains("fe80::1%eth0"));
    assertTrue(networks.contains(" 203.0.113.1 "));
  }

  @Test
  void callersAreReadAsIpLiterals() {
    assertArrayEquals(new byte[] {127, 0, 0, 1}, Networks.addressOf("127.0.0.1"));
    assertArrayEquals(new byte[] {127, 0, 0, 1}, Networks.addressOf("::ffff:127.0.0.1"));
    assertEquals(16, Networks.addressOf("0:0:0:0:0:0:0:1").length);
    assertNull(Networks.addressOf("127.1"));
    assertNull(Networks.addressOf("localhost"));
  }
}
