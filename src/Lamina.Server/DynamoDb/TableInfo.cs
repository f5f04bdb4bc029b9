using System.Text.Json;

namespace Lamina.Server.DynamoDb;

/// <summary>A key attribute: its name and scalar type (S, N or B).</summary>
internal sealed record KeyAttribute(string Name, AttributeKind Type);

/// <summary>A secondary index: its keys and projection (GSIs have their own partition key; LSIs share the table's).</summary>
internal sealed record IndexInfo
{
    public required string Name { get; init; }
    public required bool Global { get; init; }
    public required KeyAttribute Hash { get; init; }
    public KeyAttribute? Range { get; init; }

    /// <summary>ALL, KEYS_ONLY or INCLUDE.</summary>
    public string ProjectionType { get; init; } = "ALL";
    public IReadOnlyList<string> NonKeyAttributes { get; init; } = [];
    public long ReadCapacity { get; init; }
    public long WriteCapacity { get; init; }

    /// <summary>CREATING while a new GSI of an existing table is shown for the first time, else ACTIVE.</summary>
    public string Status { get; init; } = "ACTIVE";
}

/// <summary>A table's stream (one per enabling of StreamSpecification; a new one gets a new label and ARN).</summary>
internal sealed record StreamInfo(long Id, string Label, string ViewType, long CreatedMs);

/// <summary>
/// A table's definition, immutable: changes (UpdateTable, TTL, tags, streams) replace the record. Stored in
/// <c>dynamodb.db</c> as JSON (the same member names as CreateTable and DescribeTable use).
/// </summary>
internal sealed record TableInfo
{
    public required long Id { get; init; }
    public required string Account { get; init; }
    public required string Name { get; init; }
    public required string TableId { get; init; }
    public required KeyAttribute Hash { get; init; }
    public KeyAttribute? Range { get; init; }
    public required IReadOnlyList<KeyAttribute> AttributeDefinitions { get; init; }
    public IReadOnlyList<IndexInfo> Indexes { get; init; } = [];
    public string BillingMode { get; init; } = "PROVISIONED";
    public long ReadCapacity { get; init; }
    public long WriteCapacity { get; init; }
    public StreamInfo? Stream { get; init; }
    public bool StreamEnabled => Stream is not null;
    public string? TtlAttribute { get; init; }
    public IReadOnlyDictionary<string, string> Tags { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);
    public bool DeletionProtection { get; init; }
    public string TableClass { get; init; } = "STANDARD";
    public long CreatedMs { get; init; }

    /// <summary>The status the next answer shows (CREATING/UPDATING once, right after the change, then ACTIVE).</summary>
    public string Status { get; init; } = "ACTIVE";

    public IndexInfo? Index(string name) => Indexes.FirstOrDefault(i => i.Name == name);

    public bool IsKey(string attribute) => attribute == Hash.Name || attribute == Range?.Name;

    public string Arn(string region) => $"arn:aws:dynamodb:{region}:{Account}:table/{Name}";

    public string? StreamArn(string region) => Stream is { } s ? StreamArnOf(region, s.Label) : null;

    public string StreamArnOf(string region, string label) => $"{Arn(region)}/stream/{label}";

    public byte[] Serialize()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber(nameof(Id), Id);
            w.WriteString(nameof(Account), Account);
            w.WriteString("TableName", Name);
            w.WriteString(nameof(TableId), TableId);
            WriteKeySchema(w, Hash, Range);
            w.WriteStartArray(nameof(AttributeDefinitions));
            foreach (var a in AttributeDefinitions)
            {
                w.WriteStartObject();
                w.WriteString("AttributeName", a.Name);
                w.WriteString("AttributeType", a.Type.ToString());
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray(nameof(Indexes));
            foreach (var index in Indexes)
            {
                w.WriteStartObject();
                w.WriteString("IndexName", index.Name);
                w.WriteBoolean("Global", index.Global);
                WriteKeySchema(w, index.Hash, index.Range);
                WriteProjection(w, index);
                w.WriteNumber("Read", index.ReadCapacity);
                w.WriteNumber("Write", index.WriteCapacity);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString(nameof(BillingMode), BillingMode);
            w.WriteNumber("Read", ReadCapacity);
            w.WriteNumber("Write", WriteCapacity);
            if (Stream is { } stream)
            {
                w.WriteStartObject(nameof(Stream));
                w.WriteNumber(nameof(Id), stream.Id);
                w.WriteString("Label", stream.Label);
                w.WriteString("ViewType", stream.ViewType);
                w.WriteNumber(nameof(CreatedMs), stream.CreatedMs);
                w.WriteEndObject();
            }
            if (TtlAttribute is { } ttl)
            {
                w.WriteString(nameof(TtlAttribute), ttl);
            }
            w.WriteStartObject(nameof(Tags));
            foreach (var (key, value) in Tags)
            {
                w.WriteString(key, value);
            }
            w.WriteEndObject();
            w.WriteBoolean(nameof(DeletionProtection), DeletionProtection);
            w.WriteString(nameof(TableClass), TableClass);
            w.WriteNumber(nameof(CreatedMs), CreatedMs);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static TableInfo Deserialize(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        using var document = JsonDocument.ParseValue(ref reader);
        var r = document.RootElement;
        var definitions = r.GetProperty(nameof(AttributeDefinitions)).EnumerateArray()
            .Select(static a => new KeyAttribute(a.GetProperty("AttributeName").GetString()!, Enum.Parse<AttributeKind>(a.GetProperty("AttributeType").GetString()!))).ToList();
        KeyAttribute Find(string name) => definitions.First(d => d.Name == name);
        (KeyAttribute Hash, KeyAttribute? Range) Keys(JsonElement schema)
        {
            KeyAttribute? hash = null, range = null;
            foreach (var k in schema.EnumerateArray())
            {
                var attribute = Find(k.GetProperty("AttributeName").GetString()!);
                if (k.GetProperty("KeyType").GetString() == "HASH")
                {
                    hash = attribute;
                }
                else
                {
                    range = attribute;
                }
            }
            return (hash!, range);
        }
        var (tableHash, tableRange) = Keys(r.GetProperty("KeySchema"));
        var indexes = r.GetProperty(nameof(Indexes)).EnumerateArray().Select(i =>
        {
            var (h, rk) = Keys(i.GetProperty("KeySchema"));
            var projection = i.GetProperty("Projection");
            return new IndexInfo
            {
                Name = i.GetProperty("IndexName").GetString()!,
                Global = i.GetProperty("Global").GetBoolean(),
                Hash = h,
                Range = rk,
                ProjectionType = projection.GetProperty("ProjectionType").GetString()!,
                NonKeyAttributes = projection.TryGetProperty("NonKeyAttributes", out var nk) ? [.. nk.EnumerateArray().Select(static n => n.GetString()!)] : [],
                ReadCapacity = i.GetProperty("Read").GetInt64(),
                WriteCapacity = i.GetProperty("Write").GetInt64(),
            };
        }).ToList();
        StreamInfo? stream = null;
        if (r.TryGetProperty(nameof(Stream), out var s))
        {
            stream = new StreamInfo(s.GetProperty(nameof(Id)).GetInt64(), s.GetProperty("Label").GetString()!, s.GetProperty("ViewType").GetString()!, s.GetProperty(nameof(CreatedMs)).GetInt64());
        }
        return new TableInfo
        {
            Id = r.GetProperty(nameof(Id)).GetInt64(),
            Account = r.GetProperty(nameof(Account)).GetString()!,
            Name = r.GetProperty("TableName").GetString()!,
            TableId = r.GetProperty(nameof(TableId)).GetString()!,
            Hash = tableHash,
            Range = tableRange,
            AttributeDefinitions = definitions,
            Indexes = indexes,
            BillingMode = r.GetProperty(nameof(BillingMode)).GetString()!,
            ReadCapacity = r.GetProperty("Read").GetInt64(),
            WriteCapacity = r.GetProperty("Write").GetInt64(),
            Stream = stream,
            TtlAttribute = r.TryGetProperty(nameof(TtlAttribute), out var ttl) ? ttl.GetString() : null,
            Tags = r.GetProperty(nameof(Tags)).EnumerateObject().ToDictionary(static p => p.Name, static p => p.Value.GetString()!, StringComparer.Ordinal),
            DeletionProtection = r.GetProperty(nameof(DeletionProtection)).GetBoolean(),
            TableClass = r.GetProperty(nameof(TableClass)).GetString()!,
            CreatedMs = r.GetProperty(nameof(CreatedMs)).GetInt64(),
        };
    }

    public static void WriteKeySchema(Utf8JsonWriter w, KeyAttribute hash, KeyAttribute? range)
    {
        w.WriteStartArray("KeySchema");
        w.WriteStartObject();
        w.WriteString("AttributeName", hash.Name);
        w.WriteString("KeyType", "HASH");
        w.WriteEndObject();
        if (range is not null)
        {
            w.WriteStartObject();
            w.WriteString("AttributeName", range.Name);
            w.WriteString("KeyType", "RANGE");
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    public static void WriteProjection(Utf8JsonWriter w, IndexInfo index)
    {
        w.WriteStartObject("Projection");
        w.WriteString("ProjectionType", index.ProjectionType);
        if (index.ProjectionType == "INCLUDE")
        {
            w.WriteStartArray("NonKeyAttributes");
            foreach (var name in index.NonKeyAttributes)
            {
                w.WriteStringValue(name);
            }
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }
}
