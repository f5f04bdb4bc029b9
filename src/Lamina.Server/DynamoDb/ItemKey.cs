using System.IO.Hashing;
using System.Text;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// Where an item lives: its partition key and sort key in an order-preserving byte encoding (SQLite compares BLOBs
/// with memcmp, so <c>ORDER BY sk</c> is DynamoDB's order: numbers numerically, strings by UTF-8 bytes, binaries by
/// bytes), and a 16-bit hash of the partition key that spreads items over Scan's segments.
/// </summary>
internal readonly record struct ItemKey(int Segment, byte[] Pk, byte[] Sk)
{
    public const int Segments = 65536;

    public static byte[] Encode(AttributeValue value) => value.Kind switch
    {
        AttributeKind.S => Encoding.UTF8.GetBytes(value.S),
        AttributeKind.N => value.Number.EncodeKey(),
        AttributeKind.B => value.B,
        _ => throw new ArgumentException("key attributes are S, N or B", nameof(value)),
    };

    public static AttributeValue Decode(byte[] bytes, AttributeKind kind) => kind switch
    {
        AttributeKind.S => AttributeValue.FromString(Encoding.UTF8.GetString(bytes)),
        AttributeKind.N => AttributeValue.FromNumber(DynamoNumber.DecodeKey(bytes)),
        _ => AttributeValue.FromBinary(bytes),
    };

    public static int SegmentOf(byte[] pk) => (int)(XxHash32.HashToUInt32(pk) >> 16);

    public static ItemKey Of(TableInfo table, IReadOnlyDictionary<string, AttributeValue> item)
    {
        var pk = Encode(item[table.Hash.Name]);
        var sk = table.Range is { } range ? Encode(item[range.Name]) : [];
        return new ItemKey(SegmentOf(pk), pk, sk);
    }

    /// <summary>The key attributes of <paramref name="item"/> for <paramref name="table"/> (the table's key, plus an index's).</summary>
    public static Dictionary<string, AttributeValue> KeyOf(TableInfo table, IReadOnlyDictionary<string, AttributeValue> item, IndexInfo? index = null)
    {
        var key = new Dictionary<string, AttributeValue>(StringComparer.Ordinal) { [table.Hash.Name] = item[table.Hash.Name] };
        if (table.Range is { } range)
        {
            key[range.Name] = item[range.Name];
        }
        if (index is not null)
        {
            key[index.Hash.Name] = item[index.Hash.Name];
            if (index.Range is { } indexRange)
            {
                key[indexRange.Name] = item[indexRange.Name];
            }
        }
        return key;
    }

    /// <summary>The smallest encoding greater than every encoding that starts with <paramref name="prefix"/>; null when none is.</summary>
    public static byte[]? PrefixEnd(byte[] prefix)
    {
        var end = (byte[])prefix.Clone();
        for (var i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] != 0xFF)
            {
                end[i]++;
                return end[..(i + 1)];
            }
        }
        return null;
    }
}
