package dev.apikeyportal.keycloak;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * The network ranges a client may get tokens from: CIDR ranges (IPv4 {@code 203.0.113.0/24}, IPv6
 * {@code 2001:db8::/32}; a bare address is one address), separated by commas or whitespace.
 *
 * <p>Only IP literals are ever parsed: a text that is not one is refused before it reaches {@link
 * InetAddress}, which would otherwise look it up in the DNS, on the request's thread and with the
 * answer chosen by whoever controls that name. IPv4 is parsed here, strictly (four decimal parts,
 * no leading zeros, which some parsers read as octal); IPv6 goes to {@link InetAddress} only when
 * it holds nothing but hex digits, colons and dots and has a colon, which the JDK parses as a
 * literal or refuses, never looks up.
 *
 * <p>IPv4 and IPv6 are kept apart, as Python's {@code ipaddress} (the portal's side) keeps them: an
 * IPv4 range matches IPv4 addresses, an IPv6 range IPv6 addresses. An IPv4-mapped IPv6 address
 * ({@code ::ffff:203.0.113.5}, what a dual-stack socket reports for an IPv4 caller) is its IPv4
 * address, and so is a mapped range ({@code ::ffff:203.0.113.0/120} is {@code 203.0.113.0/24}).
 */
final class Networks {

  /** More ranges than this are unreadable: the portal writes far fewer (its own limit is lower). */
  static final int MAX_RANGES = 64;

  private static final Pattern SEPARATORS = Pattern.compile("[\\s,]+");
  private static final Pattern IPV6_LITERAL = Pattern.compile("[0-9A-Fa-f:][0-9A-Fa-f:.]*");
  private static final Pattern PREFIX = Pattern.compile("[0-9]{1,3}");
  private static final int MAX_IPV6_LENGTH = 45; // ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255

  private final List<Range> ranges;

  private Networks(List<Range> ranges) {
    this.ranges = ranges;
  }

  /**
   * The ranges of a client's attribute: none (no limit) when it is null, blank or only separators.
   *
   * @throws IllegalArgumentException when any part is not a range, or there are more than {@link
   *     #MAX_RANGES}: the caller refuses every request then (fail closed)
   */
  static Networks parse(String text) {
    List<Range> ranges = new ArrayList<>();
    if (text != null) {
      for (String part : SEPARATORS.split(text.strip())) {
        if (part.isEmpty()) {
          continue; // a leading separator
        }
        if (ranges.size() == MAX_RANGES) {
          throw new IllegalArgumentException("more than " + MAX_RANGES + " ranges");
        }
        ranges.add(Range.parse(part));
      }
    }
    return new Networks(List.copyOf(ranges));
  }

  /** No ranges: the client is not limited. */
  boolean isEmpty() {
    return ranges.isEmpty();
  }

  int size() {
    return ranges.size();
  }

  /** Whether {@code address} (an IP literal) is in one of the ranges; never for anything else. */
  boolean contains(String address) {
    byte[] bytes = addressOf(address);
    if (bytes == null) {
      return false;
    }
    for (Range range : ranges) {
      if (range.contains(bytes)) {
        return true;
      }
    }
    return false;
  }

  /**
   * The 4 or 16 bytes of a caller's address, IPv4-mapped ones as IPv4; null if it is not an IP
   * literal. Tolerates what a connection may report around the address: brackets, an IPv6 zone.
   */
  static byte[] addressOf(String text) {
    if (text == null) {
      return null;
    }
    String address = text.strip();
    if (address.length() > 2 && address.startsWith("[") && address.endsWith("]")) {
      address = address.substring(1, address.length() - 1);
    }
    int zone = address.indexOf('%');
    if (zone >= 0 && address.indexOf(':') >= 0) {
      address = address.substring(0, zone); // fe80::1%eth0: the zone is not part of the address
    }
    return literal(address);
  }

  /** The bytes of an IP literal (4, or 16 for IPv6 that is not IPv4-mapped), or null. */
  private static byte[] literal(String text) {
    if (text.indexOf(':') < 0) {
      return ipv4(text);
    }
    if (text.length() > MAX_IPV6_LENGTH || !IPV6_LITERAL.matcher(text).matches()) {
      return null; // never handed to InetAddress, which could look it up
    }
    if (text.indexOf('.') >= 0 && ipv4(text.substring(text.lastIndexOf(':') + 1)) == null) {
      return null; // an embedded IPv4 address as strict as a bare one (the JDK allows 1.2.3.010)
    }
    try {
      // A literal with a colon: the JDK parses it, or throws without a lookup. It turns an
      // IPv4-mapped address into an Inet4Address, which is what is wanted here.
      InetAddress address = InetAddress.getByName(text);
      return address.getAddress();
    } catch (UnknownHostException e) {
      return null;
    }
  }

  /** Dotted-quad IPv4: four decimal numbers 0-255 without leading zeros, or null. */
  private static byte[] ipv4(String text) {
    String[] parts = text.split("\\.", -1);
    if (parts.length != 4) {
      return null;
    }
    byte[] bytes = new byte[4];
    for (int i = 0; i < 4; i++) {
      String part = parts[i];
      if (part.isEmpty()
          || part.length() > 3
          || (part.length() > 1 && part.charAt(0) == '0')
          || !part.chars().allMatch(c -> c >= '0' && c <= '9')) {
        return null;
      }
      int value = Integer.parseInt(part);
      if (value > 255) {
        return null;
      }
      bytes[i] = (byte) value;
    }
    return bytes;
  }

  /** One range: the first {@code prefix} bits of {@code network} (4 or 16 bytes). */
  private static final class Range {

    private final byte[] network;
    private final int prefix;

    private Range(byte[] network, int prefix) {
      this.network = network;
      this.prefix = prefix;
    }

    static Range parse(String text) {
      int slash = text.indexOf('/');
      String address = slash < 0 ? text : text.substring(0, slash);
      boolean ipv6Text = address.indexOf(':') >= 0;
      byte[] bytes = literal(address);
      if (bytes == null) {
        throw new IllegalArgumentException("not an address or a CIDR range");
      }
      int textBits = ipv6Text ? 128 : 32;
      int prefix = textBits;
      if (slash >= 0) {
        String digits = text.substring(slash + 1);
        if (!PREFIX.matcher(digits).matches() || Integer.parseInt(digits) > textBits) {
          throw new IllegalArgumentException("not a prefix length");
        }
        prefix = Integer.parseInt(digits);
      }
      if (ipv6Text && bytes.length == 4) {
        // An IPv4-mapped range, ::ffff:a.b.c.d/n: with n >= 96 it is an IPv4 range; shorter,
        // it reaches beyond ::ffff:0:0/96 and stays IPv6 (matching no IPv4 caller).
        if (prefix >= 96) {
          return new Range(bytes, prefix - 96);
        }
        byte[] mapped = new byte[16];
        mapped[10] = (byte) 0xff;
        mapped[11] = (byte) 0xff;
        System.arraycopy(bytes, 0, mapped, 12, 4);
        return new Range(mapped, prefix);
      }
      return new Range(bytes, prefix);
    }

    /** Host bits set in the range ({@code 10.0.0.1/8}) are ignored, as the portal's parser does. */
    boolean contains(byte[] address) {
      if (address.length != network.length) {
        return false; // IPv4 against IPv6
      }
      int whole = prefix / 8;
      for (int i = 0; i < whole; i++) {
        if (address[i] != network[i]) {
          return false;
        }
      }
      int rest = prefix % 8;
      if (rest == 0) {
        return true;
      }
      int mask = 0xff << (8 - rest) & 0xff;
      return (address[whole] & mask) == (network[whole] & mask);
    }
  }
}
