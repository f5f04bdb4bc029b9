using System.Text;
using System.Text.Json;

namespace Lamina.Server.DynamoDb;

internal enum AttributeKind : byte
{
    S, N, B, BOOL, NULL, M, L, SS, NS, BS,
}

/// <summary>
/// One DynamoDB attribute value, as the wire's <c>{"S": "…"}</c> etc. names it: immutable once built (updates build
/// new values). Maps keep their members' order; sets keep the order they were given in (DynamoDB promises none).
/// </summary>
internal sealed class AttributeValue : IEquatable<AttributeValue>
{
    /// <summary>DynamoDB's limit on nested maps and lists.</summary>
    public const int MaxDepth = 32;

    private AttributeValue(AttributeKind kind, object? value, DynamoNumber number = default, bool flag = false)
    {
        Kind = kind;
        Value = value;
        Number = number;
        Flag = flag;
    }

    public AttributeKind Kind { get; }
    private object? Value { get; }
    public DynamoNumber Number { get; }
    private bool Flag { get; }

    public string S => (string)Value!;
    public byte[] B => (byte[])Value!;
    public bool Bool => Flag;
    public IReadOnlyDictionary<string, AttributeValue> M => (Dictionary<string, AttributeValue>)Value!;
    public IReadOnlyList<AttributeValue> L => (List<AttributeValue>)Value!;
    public IReadOnlyList<string> SS => (List<string>)Value!;
    public IReadOnlyList<DynamoNumber> NS => (List<DynamoNumber>)Value!;
    public IReadOnlyList<byte[]> BS => (List<byte[]>)Value!;

    public bool IsSet => Kind is AttributeKind.SS or AttributeKind.NS or AttributeKind.BS;

    public static readonly AttributeValue Null = new(AttributeKind.NULL, null, flag: true);
    public static readonly AttributeValue True = new(AttributeKind.BOOL, null, flag: true);
    public static readonly AttributeValue False = new(AttributeKind.BOOL, null, flag: false);

    public static AttributeValue FromString(string value) => new(AttributeKind.S, value);
    public static AttributeValue FromNumber(DynamoNumber value) => new(AttributeKind.N, null, value);
    public static AttributeValue FromBinary(byte[] value) => new(AttributeKind.B, value);
    public static AttributeValue FromBool(bool value) => value ? True : False;
    public static AttributeValue FromMap(Dictionary<string, AttributeValue> value) => new(AttributeKind.M, value);
    public static AttributeValue FromList(List<AttributeValue> value) => new(AttributeKind.L, value);
    public static AttributeValue FromStringSet(List<string> value) => new(AttributeKind.SS, value);
    public static AttributeValue FromNumberSet(List<DynamoNumber> value) => new(AttributeKind.NS, value);
    public static AttributeValue FromBinarySet(List<byte[]> value) => new(AttributeKind.BS, value);

    /// <summary>How many members a set, list or map has.</summary>
    public int Count => Kind switch
    {
        AttributeKind.M => M.Count,
        AttributeKind.L => L.Count,
        AttributeKind.SS => SS.Count,
        AttributeKind.NS => NS.Count,
        AttributeKind.BS => BS.Count,
        _ => 0,
    };

    /// <summary>
    /// Reads a wire attribute value, checking it as DynamoDB does; the exception carries DynamoDB's message.
    /// </summary>
    public static AttributeValue Parse(JsonElement element, int depth = 0)
    {
        if (depth > MaxDepth)
        {
            throw DynamoException.Validation("Nesting Levels have exceeded supported limits");
        }
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw DynamoException.Validation("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes");
        }
        AttributeValue? result = null;
        var count = 0;
        foreach (var member in element.EnumerateObject())
        {
            if (member.Value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            count++;
            result = member.Name switch
            {
                "S" => FromString(Text(member.Value)),
                "N" => FromNumber(ParseNumber(Text(member.Value))),
                "B" => FromBinary(Binary(member.Value)),
                "BOOL" => member.Value.ValueKind switch
                {
                    JsonValueKind.True => True,
                    JsonValueKind.False => False,
                    _ => throw Serialization("BOOL must be a boolean"),
                },
                "NULL" => member.Value.ValueKind == JsonValueKind.True ? Null
                    : member.Value.ValueKind == JsonValueKind.False
                        ? throw DynamoException.Validation("One or more parameter values were invalid: Null attribute value types must have the value of true")
                        : throw Serialization("NULL must be a boolean"),
                "M" => FromMap(ParseMap(member.Value, depth + 1)),
                "L" => FromList(ParseList(member.Value, depth + 1)),
                "SS" => StringSet(member.Value),
                "NS" => NumberSet(member.Value),
                "BS" => BinarySet(member.Value),
                _ => throw Serialization($"Unexpected field type: {member.Name}"),
            };
        }
        if (count == 0)
        {
            throw DynamoException.Validation("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes");
        }
        if (count > 1)
        {
            throw DynamoException.Validation("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes");
        }
        return result!;
    }

    /// <summary>An item or map of attribute values (<c>{"name": {"S": …}, …}</c>).</summary>
    public static Dictionary<string, AttributeValue> ParseMap(JsonElement element, int depth = 0)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Serialization("Start of list found where not expected");
        }
        var map = new Dictionary<string, AttributeValue>(StringComparer.Ordinal);
        foreach (var member in element.EnumerateObject())
        {
            map[member.Name] = Parse(member.Value, depth);
        }
        return map;
    }

    private static List<AttributeValue> ParseList(JsonElement element, int depth)
    {
        if (element.ValueKind != JsonValueKind.Array)
        {
            throw Serialization("Start of structure or map found where not expected");
        }
        var list = new List<AttributeValue>(element.GetArrayLength());
        foreach (var value in element.EnumerateArray())
        {
            list.Add(Parse(value, depth));
        }
        return list;
    }

    private static string Text(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Serialization($"{value.ValueKind.ToString().ToUpperInvariant()}_VALUE cannot be converted to String");

    private static DynamoNumber ParseNumber(string text) =>
        DynamoNumber.TryParse(text, out var n, out var error) ? n : throw DynamoException.Validation(error!);

    private static byte[] Binary(JsonElement value)
    {
        var text = Text(value);
        try
        {
            return Convert.FromBase64String(text);
        }
        catch (FormatException)
        {
            throw Serialization("Base64 encoded value is not valid");
        }
    }

    private static AttributeValue StringSet(JsonElement value)
    {
        var list = SetMembers(value, "An string set  may not be empty", Text);
        CheckDuplicates(list, StringComparer.Ordinal, list);
        return FromStringSet(list);
    }

    private static AttributeValue NumberSet(JsonElement value)
    {
        var texts = SetMembers(value, "An number set  may not be empty", Text);
        var list = texts.ConvertAll(ParseNumber);
        CheckDuplicates(list, EqualityComparer<DynamoNumber>.Default, texts);
        return FromNumberSet(list);
    }

    private static AttributeValue BinarySet(JsonElement value)
    {
        var list = SetMembers(value, "Binary sets should not be empty", Binary);
        CheckDuplicates(list.ConvertAll(Convert.ToBase64String), StringComparer.Ordinal, list.ConvertAll(Convert.ToBase64String));
        return FromBinarySet(list);
    }

    private static List<T> SetMembers<T>(JsonElement value, string emptyMessage, Func<JsonElement, T> read)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw Serialization("Start of structure or map found where not expected");
        }
        var list = new List<T>(value.GetArrayLength());
        foreach (var member in value.EnumerateArray())
        {
            list.Add(read(member));
        }
        return list.Count == 0 ? throw DynamoException.Validation("One or more parameter values were invalid: " + emptyMessage) : list;
    }

    private static void CheckDuplicates<T>(List<T> values, IEqualityComparer<T> comparer, IEnumerable<string> shown)
    {
        if (new HashSet<T>(values, comparer).Count != values.Count)
        {
            throw DynamoException.Validation($"One or more parameter values were invalid: Input collection [{string.Join(", ", shown)}] contains duplicates.");
        }
    }

    private static DynamoException Serialization(string message) => new("SerializationException", message);

    public void WriteTo(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        switch (Kind)
        {
            case AttributeKind.S: w.WriteString(nameof(S), S); break;
            case AttributeKind.N: w.WriteString("N", Number.ToString()); break;
            case AttributeKind.B: w.WriteBase64String(nameof(B), B); break;
            case AttributeKind.BOOL: w.WriteBoolean("BOOL", Bool); break;
            case AttributeKind.NULL: w.WriteBoolean("NULL", true); break;
            case AttributeKind.M:
                w.WritePropertyName(nameof(M));
                WriteMap(w, M);
                break;
            case AttributeKind.L:
                w.WriteStartArray(nameof(L));
                foreach (var value in L)
                {
                    value.WriteTo(w);
                }
                w.WriteEndArray();
                break;
            case AttributeKind.SS:
                w.WriteStartArray(nameof(SS));
                foreach (var value in SS)
                {
                    w.WriteStringValue(value);
                }
                w.WriteEndArray();
                break;
            case AttributeKind.NS:
                w.WriteStartArray(nameof(NS));
                foreach (var value in NS)
                {
                    w.WriteStringValue(value.ToString());
                }
                w.WriteEndArray();
                break;
            case AttributeKind.BS:
                w.WriteStartArray(nameof(BS));
                foreach (var value in BS)
                {
                    w.WriteBase64StringValue(value);
                }
                w.WriteEndArray();
                break;
        }
        w.WriteEndObject();
    }

    public static void WriteMap(Utf8JsonWriter w, IReadOnlyDictionary<string, AttributeValue> map)
    {
        w.WriteStartObject();
        foreach (var (name, value) in map)
        {
            w.WritePropertyName(name);
            value.WriteTo(w);
        }
        w.WriteEndObject();
    }

    /// <summary>An item as compact wire JSON (how items are stored).</summary>
    public static byte[] Serialize(IReadOnlyDictionary<string, AttributeValue> item)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            WriteMap(w, item);
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static Dictionary<string, AttributeValue> Deserialize(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 256 });
        using var document = JsonDocument.ParseValue(ref reader);
        return ParseMap(document.RootElement);
    }

    /// <summary>DynamoDB's size of a value in bytes (strings and binaries by length, numbers by digits, containers by members).</summary>
    public int Size => Kind switch
    {
        AttributeKind.S => Encoding.UTF8.GetByteCount(S),
        AttributeKind.N => NumberSize(Number),
        AttributeKind.B => B.Length,
        AttributeKind.BOOL or AttributeKind.NULL => 1,
        AttributeKind.SS => SS.Sum(Encoding.UTF8.GetByteCount),
        AttributeKind.NS => NS.Sum(NumberSize),
        AttributeKind.BS => BS.Sum(static b => b.Length),
        AttributeKind.L => 3 + L.Sum(static v => 1 + v.Size),
        AttributeKind.M => 3 + M.Sum(static p => 1 + Encoding.UTF8.GetByteCount(p.Key) + p.Value.Size),
        _ => 0,
    };

    private static int NumberSize(DynamoNumber n) => n.Sign == 0 ? 1 : 1 + (n.Digits.Length + 1) / 2 + (n.Sign < 0 ? 1 : 0);

    /// <summary>An item's size: its names and values, as the 400 KB limit and the 1 MB page measure it.</summary>
    public static int ItemSize(IReadOnlyDictionary<string, AttributeValue> item)
    {
        var size = 0;
        foreach (var (name, value) in item)
        {
            size += Encoding.UTF8.GetByteCount(name) + value.Size;
        }
        return size;
    }

    public bool Equals(AttributeValue? other)
    {
        if (other is null || other.Kind != Kind)
        {
            return false;
        }
        switch (Kind)
        {
            case AttributeKind.S: return S == other.S;
            case AttributeKind.N: return Number == other.Number;
            case AttributeKind.B: return B.AsSpan().SequenceEqual(other.B);
            case AttributeKind.BOOL: return Bool == other.Bool;
            case AttributeKind.NULL: return true;
            case AttributeKind.M:
                return M.Count == other.M.Count && M.All(p => other.M.TryGetValue(p.Key, out var v) && p.Value.Equals(v));
            case AttributeKind.L:
                return L.Count == other.L.Count && L.Zip(other.L).All(static p => p.First.Equals(p.Second));
            case AttributeKind.SS:
                return SS.Count == other.SS.Count && new HashSet<string>(SS, StringComparer.Ordinal).SetEquals(other.SS);
            case AttributeKind.NS:
                return NS.Count == other.NS.Count && new HashSet<DynamoNumber>(NS).SetEquals(other.NS);
            case AttributeKind.BS:
                return BS.Count == other.BS.Count && new HashSet<string>(BS.Select(Convert.ToBase64String), StringComparer.Ordinal).SetEquals(other.BS.Select(Convert.ToBase64String));
        }
        return false;
    }

    public override bool Equals(object? obj) => Equals(obj as AttributeValue);

    public override int GetHashCode() => Kind switch
    {
        AttributeKind.S => S.GetHashCode(StringComparison.Ordinal),
        AttributeKind.N => Number.GetHashCode(),
        AttributeKind.B => Convert.ToBase64String(B).GetHashCode(StringComparison.Ordinal),
        _ => (int)Kind,
    };

    public static bool ItemsEqual(IReadOnlyDictionary<string, AttributeValue>? a, IReadOnlyDictionary<string, AttributeValue>? b) =>
        a is null || b is null ? a is null && b is null : a.Count == b.Count && a.All(p => b.TryGetValue(p.Key, out var v) && p.Value.Equals(v));

    /// <summary>
    /// Orders two scalars of one type as DynamoDB does: numbers numerically, strings by their UTF-8 bytes, binaries
    /// byte by byte. Null when they are not comparable (different or non-scalar types).
    /// </summary>
    public static int? Compare(AttributeValue a, AttributeValue b)
    {
        if (a.Kind != b.Kind)
        {
            return null;
        }
        return a.Kind switch
        {
            AttributeKind.N => a.Number.CompareTo(b.Number),
            AttributeKind.S => CompareUtf8(a.S, b.S),
            AttributeKind.B => a.B.AsSpan().SequenceCompareTo(b.B),
            _ => null,
        };
    }

    public static int CompareUtf8(string a, string b) =>
        Math.Sign(Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b)));

    /// <summary>For error messages: the value as DynamoDB prints it ({S:x}).</summary>
    public override string ToString() => Kind switch
    {
        AttributeKind.S => S,
        AttributeKind.N => Number.ToString(),
        AttributeKind.B => Convert.ToBase64String(B),
        _ => Kind.ToString(),
    };
}
