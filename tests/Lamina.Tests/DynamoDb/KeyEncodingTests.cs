using System.Text;
using Lamina.Server.DynamoDb;

namespace Lamina.Tests.DynamoDb;

/// <summary>
/// The order-preserving key encoding: byte-wise order of encodings (what SQLite's BLOB comparison does) must be
/// DynamoDB's order — numeric for N, UTF-8 bytes for S, bytes for B — and decoding gives the value back.
/// </summary>
public sealed class KeyEncodingTests
{
    private static readonly string[] Numbers =
    [
        "-9.9999999999999999999999999999999999999E+125", "-1E+100", "-123456", "-1000", "-999.999", "-10", "-9", "-1.01", "-1.001", "-1",
        "-0.5", "-0.05", "-1E-130", "0", "1E-130", "0.001", "0.01", "0.0101", "0.1", "1", "1.0000000000000000000000000000000000001",
        "1.5", "2", "9.99", "10", "10.5", "11", "99", "100", "1000", "123456789012345678901234567890", "1E+100",
        "9.9999999999999999999999999999999999999E+125",
    ];

    [Fact]
    public void Numbers_SortNumerically_AsBytes()
    {
        var shuffled = Numbers.OrderBy(static n => n.GetHashCode(StringComparison.Ordinal)).ToList();
        var sorted = shuffled.Select(DynamoNumber.Parse).Select(static n => (n, key: n.EncodeKey()))
            .OrderBy(static p => p.key, ByteOrder.Instance).Select(static p => p.n).ToList();
        Assert.Equal(Numbers.Select(static n => DynamoNumber.Parse(n).ToString()), sorted.Select(static n => n.ToString()));
    }

    [Fact]
    public void Numbers_RoundTrip()
    {
        foreach (var text in Numbers)
        {
            var number = DynamoNumber.Parse(text);
            Assert.Equal(number, DynamoNumber.DecodeKey(number.EncodeKey()));
        }
    }

    [Fact]
    public void EqualNumbers_HaveOneEncoding() =>
        Assert.Equal(DynamoNumber.Parse("1.50").EncodeKey(), DynamoNumber.Parse("15E-1").EncodeKey());

    [Fact]
    public void Strings_SortByUtf8Bytes_NotUtf16()
    {
        // U+FFFD sorts before U+1F600 in UTF-8 (EF.. < F0..) but after it in UTF-16 (FFFD > D83D).
        var values = new[] { "", "A", "AB", "B", "a", "é", "\uFFFD", "\U0001F600" };
        var sorted = values.Reverse().Select(static s => ItemKey.Encode(AttributeValue.FromString(s))).OrderBy(static k => k, ByteOrder.Instance)
            .Select(static k => Encoding.UTF8.GetString(k)).ToList();
        Assert.Equal(values, sorted);
        Assert.True(AttributeValue.CompareUtf8("\uFFFD", "\U0001F600") < 0);
        Assert.True(string.CompareOrdinal("\uFFFD", "\U0001F600") > 0, "UTF-16 order differs: the reason for byte comparison");
    }

    [Fact]
    public void PrefixEnd_BoundsBeginsWith()
    {
        Assert.Equal([0x61, 0x63], ItemKey.PrefixEnd([0x61, 0x62]));
        Assert.Equal([0x62], ItemKey.PrefixEnd([0x61, 0xFF]));
        Assert.Null(ItemKey.PrefixEnd([0xFF, 0xFF]));
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
