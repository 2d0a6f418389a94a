"""Drawing what CvT computes: attention maps of chosen queries and attention rollout."""
from .attention import (
                        attention_rollout,
                        attention_weights,
                        capture_attention_inputs,
                        key_map_size,
                        query_index,
                        read_image,
                        visualize_attention,
)

__all__ = ['attention_rollout', 'attention_weights', 'capture_attention_inputs', 'key_map_size',
           'query_index', 'read_image', 'visualize_attention']
